"""``xscan eval`` for anomaly models: image and pixel metrics, operating points, overlays.

The model is an exported ``.onnx`` file (run through the torch-free runtime, exactly as
``xscan score`` runs it) or a training checkpoint ``.pt`` (run in PyTorch with the same
preprocessing, tiling and normalisation). Each scan gets a normalised score and a normalised
anomaly map at its original resolution.

Reported (``OUT/metrics.json``):

* ``image``: AUROC; detection rate at 1 % / 5 % / ... FAR with thresholds calibrated on this
  set's benign scans (the best any threshold could do here); and at the model's own operating
  points (the FAR and detection rate a deployment would actually see);
* ``pixel`` (where masks exist): pixel AUROC and AUPRO (30 % FPR), on maps and masks reduced
  so their long side is at most ``pixel_max_side`` (memory);
* ``reference`` (``reference_dir``): the same image/pixel metrics for reference mode, each scan
  compared with its earlier cleared scans in ``reference_dir/<scan stem>/``.

Overlays (``OUT/overlays/*.png``): the highest-scoring benign scans (false alarms first) and
the highest-scoring threat scans, heat map coloured from two units below the operating
threshold up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xscan.anomaly.sources import LabelledScan, ScanRef
from xscan.imageio import IMAGE_SUFFIXES, read_image
from xscan.metrics.alarm import alarm_metrics
from xscan.metrics.anomaly import aupro, pixel_auroc, write_overlay
from xscan.runtime.overlay import HEAT_BELOW
from xscan.spec import ModelSpec

log = logging.getLogger(__name__)

# decoded scan -> (normalised score, normalised map (H, W) at scan resolution)
ScanFn = Callable[[np.ndarray], tuple[float, np.ndarray]]


def load_scan_fn(model_path: str | Path, threads: int | None = None) -> tuple[ModelSpec, ScanFn]:
    """A scoring function for an ``.onnx`` model (runtime) or a ``.pt`` checkpoint (torch)."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix == ".onnx":
        from xscan.runtime import load_model

        scorer = load_model(path, threads=threads)
        if scorer.spec.task != "anomaly":
            raise ValueError(f"{path}: spec.task is {scorer.spec.task!r}, not 'anomaly'")

        def run_onnx(image: np.ndarray) -> tuple[float, np.ndarray]:
            p = scorer.predict(image)
            return float(p.image_score), p.anomaly_map

        return scorer.spec, run_onnx
    from xscan.anomaly.scanscore import score_scan, torch_runner
    from xscan.metrics.anomaly import normalise
    from xscan.models import build_model
    from xscan.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    spec = ckpt["spec"]
    if spec.task != "anomaly":
        raise ValueError(f"{path}: spec.task is {spec.task!r}, not 'anomaly'")
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    runner = torch_runner(model)
    norm = spec.score_normalization or {"mean": 0.0, "std": 1.0}

    def run_torch(image: np.ndarray) -> tuple[float, np.ndarray]:
        r = score_scan(image, spec, runner)
        return float(normalise(r.score, norm)), normalise(r.amap, norm).astype(np.float32)

    return spec, run_torch


def model_spec(model_path: str | Path) -> ModelSpec:
    """The spec of an ``.onnx`` model (metadata, torch-free) or a ``.pt`` checkpoint."""
    path = Path(model_path)
    if path.suffix == ".onnx":
        from xscan.runtime import read_spec

        return read_spec(path)
    from xscan.train.checkpoint import load_checkpoint

    return load_checkpoint(path)["spec"]


def _reduce(amap: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return amap, mask
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    a = cv2.resize(amap.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return a, m


class _Collector:
    """Scores, labels and reduced maps/masks of one scoring method."""

    def __init__(self, max_side: int) -> None:
        self.max_side = max_side
        self.names: list[str] = []
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.maps: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def add(self, scan: LabelledScan, score: float, amap: np.ndarray) -> None:
        self.names.append(scan.name)
        self.scores.append(score)
        self.labels.append(scan.label)
        if scan.mask is not None:
            a, m = _reduce(amap, scan.mask, self.max_side)
            self.maps.append(a)
            self.masks.append(m)

    def metrics(self, far_targets: list[float], thresholds: dict[str, float]) -> dict[str, Any]:
        y = np.asarray(self.labels) > 0
        out: dict[str, Any] = {"image": alarm_metrics(self.scores, y, far_targets, thresholds)}
        if self.masks and len(self.masks) == len(self.scores) and any(m.any() for m in self.masks):
            out["pixel"] = {
                "auroc": pixel_auroc(self.masks, self.maps),
                "aupro_0.3": aupro(self.masks, self.maps, 0.3),
                "max_side": self.max_side,
            }
        return out


def references_for(reference_dir: Path, scan_name: str) -> list[np.ndarray]:
    folder = reference_dir / Path(scan_name).stem
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [read_image(p) for p in files]


def evaluate(
    model_path: str | Path,
    refs: list[ScanRef],
    out_dir: str | Path,
    far_targets: list[float] | tuple[float, ...] = (0.01, 0.05, 0.10),
    max_overlays: int = 16,
    pixel_max_side: int = 256,
    reference_dir: str | Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate an anomaly model on labelled scans; writes ``metrics.json`` and overlays."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec, scan_fn = load_scan_fn(model_path, threads)
    model_c, ref_c = _Collector(pixel_max_side), _Collector(pixel_max_side)
    kept: list[tuple[float, LabelledScan, np.ndarray]] = []
    for i, r in enumerate(refs):
        scan = r.load()
        score, amap = scan_fn(scan.image)
        model_c.add(scan, score, amap)
        if reference_dir is not None:
            from xscan.anomaly.reference import reference_map

            res = reference_map(scan.image, references_for(Path(reference_dir), scan.name))
            ref_c.add(scan, res.score, res.amap)
        kept = _keep_for_overlay(kept, scan, score, amap, max_overlays)
        if (i + 1) % 25 == 0:
            log.info("scored %d/%d scans", i + 1, len(refs))
    thresholds = {op.name: op.threshold for op in spec.operating_points}
    result: dict[str, Any] = {
        "model": str(model_path),
        "spec_name": spec.name,
        "arch": spec.arch,
        "n_scans": len(refs),
        **model_c.metrics(list(far_targets), thresholds),
    }
    if reference_dir is not None:
        result["reference"] = ref_c.metrics(list(far_targets), {})
    _write_overlays(out / "overlays", kept, spec)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    (out / "scores.jsonl").write_text(
        "".join(
            json.dumps({"image": n, "label": int(y), "score": round(float(s), 5)}) + "\n"
            for n, y, s in zip(model_c.names, model_c.labels, model_c.scores, strict=True)
        )
    )
    return result


def _keep_for_overlay(kept, scan: LabelledScan, score: float, amap: np.ndarray, n: int):
    """Keep the most telling scans for overlays: the highest-scoring benign scans (false
    alarms first) and the highest-scoring threat scans, ``n // 2`` each (the rest to benign)."""
    if n <= 0:
        return kept
    small = _reduce(amap, np.zeros(amap.shape, bool), 1024)[0]
    kept.append((score, LabelledScan(scan.name, _thumb(scan.image), scan.label, None), small))
    kept.sort(key=lambda t: -t[0])
    threats = [k for k in kept if k[1].label][: n // 2]
    benign = [k for k in kept if not k[1].label][: n - len(threats)]
    return sorted(threats + benign, key=lambda t: -t[0])


def _thumb(image: np.ndarray, max_side: int = 1024) -> np.ndarray:
    from xscan.preprocess import to_modality

    x = image
    if image.dtype == np.float32 and image.ndim == 3 and image.shape[2] in (2, 3):
        x = image[:, :, 1]  # raw pair: show the high-energy transmission
    x = to_modality(x, "false_color")
    h, w = x.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f < 1.0:
        x = cv2.resize(x, (int(round(w * f)), int(round(h * f))), interpolation=cv2.INTER_AREA)
    return (x * 255).astype(np.uint8)


def _write_overlays(folder: Path, kept, spec: ModelSpec) -> None:
    vmin = spec.alarm_threshold - HEAT_BELOW if spec.operating_points else None
    for _, scan, amap in kept:
        lo = vmin if vmin is not None else float(np.quantile(amap, 0.5))
        hi = max(float(amap.max()), lo + 1e-3)
        tag = "threat" if scan.label else "benign"
        write_overlay(folder / f"{tag}_{Path(scan.name).stem}.png", scan.image, amap, lo, hi)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines for the console."""
    lines = []
    for key, title in (("image", "model"), ("reference", "reference mode")):
        block = result.get(key) if key == "image" else result.get(key, {}).get("image")
        if not block:
            continue
        at = ", ".join(f"{n}: DR {v['detection_rate']:.3f}" for n, v in block["at_far"].items())
        lines.append(f"{title}: image AUROC {block['auroc']:.4f} ({at})")
        given = block.get("given") or {}
        for n, v in given.items():
            lines.append(f"  operating point {n}: FAR {v['far']:.3f}, DR {v['detection_rate']:.3f}")
        pix = result.get("pixel") if key == "image" else result.get(key, {}).get("pixel")
        if pix:
            lines.append(f"  pixel AUROC {pix['auroc']:.4f}, AUPRO {pix['aupro_0.3']:.4f}")
    return lines


__all__ = ["evaluate", "load_scan_fn", "model_spec", "summary_lines"]
