"""The INT8 accuracy gate: the quantised model against the FP32 model on the same labelled
scans, both run through the runtime exactly as deployed.

Two measures, each refusing the INT8 file when it loses more than the allowed drop:

* **AP50** on scans with boxes: an ``xscan synth`` folder (``annotations.json`` in COCO form,
  layout in docs/architecture.md), given with ``--gate-data`` or generated with a fixed seed.
  Objects of classes the model does not know are left out of the ground truth. The report
  also gives the bag-level detection and false-alarm rates at the model's default operating
  point.
* **Bag-level detection rate** on scans with image-level labels only, such as real SIXray
  scans (``--gate-bags``, any dataset ``xscan data`` reads): the share of threat scans that
  alarm at the default operating point's false-alarm rate, with each model's threshold
  calibrated on the set's own benign scans (as ``xscan eval`` does). This is where an INT8
  model's loss on a deployment site's own scans shows, which a synthetic AP50 can miss.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xscan.imageio import read_image, read_raw_pair
from xscan.spec import ModelSpec

# Both measures are differences of floats (AP50 from pycocotools, detection rates that are
# multiples of 1/n): a drop equal to the allowance must pass whatever the rounding.
DROP_TOLERANCE = 1e-9


def within(drop: float, max_drop: float) -> bool:
    """Whether a measured ``drop`` is within the allowed ``max_drop``."""
    return bool(drop <= max_drop + DROP_TOLERANCE)


class GateError(ValueError):
    """A quantised model lost too much accuracy; the message gives the numbers."""


@dataclass
class LabelledScan:
    image: np.ndarray
    boxes: np.ndarray  # (N, 4) float32 xyxy original pixels
    labels: np.ndarray  # (N,) int64 indices into spec.class_names
    has_threat: bool


@dataclass
class BagGateReport:
    """The bag-level measure of the gate (scans with image-level labels)."""

    data: str
    n_images: int
    n_threat: int
    n_benign: int
    target_far: float
    detection_rate_fp32: float
    detection_rate_int8: float
    far_fp32: float
    far_int8: float
    auroc_fp32: float
    auroc_int8: float
    drop: float
    max_drop: float
    passed: bool

    def summary(self) -> str:
        return (
            f"detection rate at {100 * self.target_far:g} % false alarms fp32 "
            f"{100 * self.detection_rate_fp32:.2f} vs int8 {100 * self.detection_rate_int8:.2f} "
            f"(drop {100 * self.drop:.2f} points, allowed {100 * self.max_drop:.2f}; AUROC "
            f"{self.auroc_fp32:.4f} vs {self.auroc_int8:.4f}) on {self.n_threat} threat / "
            f"{self.n_benign} benign scans from {self.data}"
        )


@dataclass
class GateReport:
    n_images: int
    n_objects: int
    ap50_fp32: float
    ap50_int8: float
    drop: float
    max_drop: float
    detection_rate_fp32: float | None
    detection_rate_int8: float | None
    far_fp32: float | None
    far_int8: float | None
    data: str
    passed: bool
    bags: BagGateReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = (
            f"AP50 fp32 {100 * self.ap50_fp32:.2f} vs int8 {100 * self.ap50_int8:.2f} "
            f"(drop {100 * self.drop:.2f} points, allowed {100 * self.max_drop:.2f}) on "
            f"{self.n_images} scans / {self.n_objects} objects from {self.data}"
        )
        if self.bags is not None:
            text += f"; {self.bags.summary()}"
        return text


def load_labelled(
    folder: str | Path, spec: ModelSpec, limit: int | None = None
) -> list[LabelledScan]:
    """Scans and boxes of an ``xscan synth`` folder, read as the runtime reads them."""
    folder = Path(folder)
    ann_path = folder / "annotations.json"
    if not ann_path.is_file():
        raise FileNotFoundError(f"{ann_path}: gate data needs an xscan synth folder (COCO JSON)")
    coco = json.loads(ann_path.read_text())
    cat_to_class = {
        c["id"]: spec.class_names.index(c["name"])
        for c in coco.get("categories", [])
        if c["name"] in spec.class_names
    }
    if not cat_to_class:
        raise ValueError(
            f"{ann_path}: none of its categories is a class of the model {list(spec.class_names)}"
        )
    per_image: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        if a["category_id"] in cat_to_class and not a.get("iscrowd", 0):
            per_image.setdefault(a["image_id"], []).append(a)
    scans = []
    for im in coco["images"][:limit]:
        anns = per_image.get(im["id"], [])
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = np.array([cat_to_class[a["category_id"]] for a in anns], np.int64)
        scans.append(LabelledScan(_read(folder, im, spec), boxes, labels, bool(len(anns))))
    return scans


def _read(folder: Path, im: dict, spec: ModelSpec) -> np.ndarray:
    if spec.modality == "raw_dual":
        return read_raw_pair(folder / im["raw_low"], folder / im["raw_high"])
    if spec.modality == "gray" and im.get("raw_high"):
        return read_image(folder / im["raw_high"])
    return read_image(folder / "images" / im["file_name"])


def generate_gate_data(
    out: str | Path, size_hw: tuple[int, int], n: int = 96, seed: int = 2024
) -> Path:
    """Write a seeded synthetic baggage set (half threat scans) for the gate."""
    from xscan.synth.generator import SynthOptions, write_dataset

    write_dataset(
        out, "baggage", n, size_hw, seed, workers=2, options=SynthOptions(threat_fraction=0.5)
    )
    return Path(out)


def evaluate(model, scans: list[LabelledScan]) -> tuple[float, float | None, float | None]:
    """``(AP50, detection rate, false-alarm rate)`` of a runtime model on ``scans``."""
    from xscan.metrics.detection import coco_metrics

    gts, preds, alarms = [], [], []
    for i, s in enumerate(scans):
        p = model.predict(s.image)
        h, w = s.image.shape[:2]
        gts.append({"image_id": i, "boxes": s.boxes, "labels": s.labels, "height": h, "width": w})
        preds.append({"image_id": i, "boxes": p.boxes, "scores": p.scores, "labels": p.classes})
        alarms.append(p.alarm)
    ap50 = float(coco_metrics(gts, preds, model.spec.class_names)["AP50"])
    alarms_a = np.array(alarms, bool)
    threat = np.array([s.has_threat for s in scans], bool)
    dr = float(alarms_a[threat].mean()) if threat.any() else None
    far = float(alarms_a[~threat].mean()) if (~threat).any() else None
    return (0.0 if np.isnan(ap50) else ap50), dr, far


def load_bags(
    dataset: str | Path,
    kind: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> tuple[list, str]:
    """The records (image-level labels: threat or benign) of any dataset ``xscan data``
    reads, and a label for reports; images are decoded later, a batch at a time."""
    from xscan.metrics.evaluation import load_records

    records, kind = load_records(str(dataset), kind, split, limit)
    n_threat = sum(bool(r.is_threat) for r in records)
    if n_threat == 0 or n_threat == len(records):
        raise ValueError(
            f"{dataset}: the bag-level gate needs threat and benign scans; found {n_threat} "
            f"threat of {len(records)} (format {kind}, split {split})"
        )
    label = f"{dataset} (format {kind}" + (f", split {split}" if split else "")
    return records, label + (f", first {limit})" if limit else ")")


def image_scores(models: list, records: list, batch: int = 8) -> list[np.ndarray]:
    """Each record's image score (highest detection score) under each runtime model, the
    images decoded once per batch as the runtime decodes them. A file that cannot be read is
    an error naming it: a gate measured on fewer scans than asked for is not a gate."""
    from xscan.data.sample import load_record

    modality = models[0].spec.modality
    out: list[list[float]] = [[] for _ in models]
    for start in range(0, len(records), batch):
        images = [load_record(r, modality).image for r in records[start : start + batch]]
        for scores, model in zip(out, models, strict=True):
            scores += [float(p.image_score) for p in model.predict_batch(images)]
    return [np.array(s, np.float64) for s in out]


def bag_gate(
    fp32, int8, records: list, label: str, max_drop: float, target_far: float
) -> BagGateReport:
    """Detection rate at ``target_far`` (threshold calibrated per model on the benign scans
    of ``records``) of the runtime models ``fp32`` and ``int8``; passed if it drops by at
    most ``max_drop``."""
    from xscan.metrics.alarm import auroc, calibrate_threshold, rates_at_threshold

    threat = np.array([bool(r.is_threat) for r in records], bool)
    rates, aucs = [], []
    for scores in image_scores([fp32, int8], records):
        threshold = calibrate_threshold(scores[~threat], target_far)
        rates.append(rates_at_threshold(scores, threat, threshold))
        aucs.append(auroc(scores, threat))
    drop = rates[0]["detection_rate"] - rates[1]["detection_rate"]
    return BagGateReport(
        data=label,
        n_images=len(records),
        n_threat=int(threat.sum()),
        n_benign=int((~threat).sum()),
        target_far=float(target_far),
        detection_rate_fp32=rates[0]["detection_rate"],
        detection_rate_int8=rates[1]["detection_rate"],
        far_fp32=rates[0]["far"],
        far_int8=rates[1]["far"],
        auroc_fp32=aucs[0],
        auroc_int8=aucs[1],
        drop=float(drop),
        max_drop=float(max_drop),
        passed=within(drop, max_drop),
    )


def default_far(spec: ModelSpec) -> float:
    """The false-alarm rate of the spec's default operating point (5 % without one)."""
    op = spec.operating_point
    return float(op.target_far) if op is not None and op.target_far is not None else 0.05


def int8_gate(
    fp32_path: str | Path,
    int8_path: str | Path,
    max_drop: float,
    data: str | Path | None = None,
    size_hw: tuple[int, int] | None = None,
    n_generated: int = 96,
    threads: int | None = None,
    limit: int | None = None,
    bags: str | Path | None = None,
    bags_format: str | None = None,
    bags_split: str | None = None,
    bags_limit: int | None = None,
) -> GateReport:
    """Compare AP50 of ``int8_path`` with ``fp32_path``; ``passed`` is ``drop <= max_drop``
    (and, with ``bags``, the bag-level detection rate drops by at most ``max_drop`` too).

    ``data``: an ``xscan synth`` folder; ``None`` generates ``n_generated`` scans of
    ``size_hw`` (default: the input size) with a fixed seed. ``bags``: a dataset with
    image-level labels (read with ``bags_format``/``bags_split``) for the bag-level measure
    at the default operating point's false-alarm rate.
    """
    from xscan.runtime import load_model

    fp32 = load_model(fp32_path, threads=threads)
    int8 = load_model(int8_path, threads=threads)
    if fp32.spec.task != "detect":
        raise ValueError(
            f"{fp32_path}: the INT8 gate measures detection AP50; task is {fp32.spec.task!r}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            h, w = size_hw or fp32.spec.input_size
            data_dir = generate_gate_data(Path(tmp) / "gate", (h, w), n_generated)
            label = f"{n_generated} generated baggage scans {w}x{h} (seed 2024)"
        else:
            data_dir, label = Path(data), str(data) + (f" (first {limit})" if limit else "")
        scans = load_labelled(data_dir, fp32.spec, limit=limit)
    n_obj = int(sum(len(s.labels) for s in scans))
    if n_obj == 0:
        raise ValueError(f"{label}: no labelled objects of the model's classes to measure AP50 on")
    ap_f, dr_f, far_f = evaluate(fp32, scans)
    ap_q, dr_q, far_q = evaluate(int8, scans)
    drop = ap_f - ap_q
    bag_report = None
    if bags is not None:
        records, bag_label = load_bags(bags, bags_format, bags_split, bags_limit)
        far = default_far(fp32.spec)
        bag_report = bag_gate(fp32, int8, records, bag_label, max_drop, far)
    return GateReport(
        n_images=len(scans),
        n_objects=n_obj,
        ap50_fp32=ap_f,
        ap50_int8=ap_q,
        drop=drop,
        max_drop=max_drop,
        detection_rate_fp32=dr_f,
        detection_rate_int8=dr_q,
        far_fp32=far_f,
        far_int8=far_q,
        data=label,
        passed=within(drop, max_drop) and (bag_report is None or bag_report.passed),
        bags=bag_report,
    )
