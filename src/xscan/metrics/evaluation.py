"""Evaluation of a detector checkpoint or exported model on a dataset (``xscan eval``).

Both paths score in the original image's pixel coordinates: a checkpoint's detections are
mapped back through each scan's letterbox; an exported model's come from
``xscan.runtime`` already in original pixels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from xscan.metrics.alarm import operating_points, roc_curve
from xscan.metrics.curves import plot_pr, plot_roc
from xscan.metrics.detection import json_safe
from xscan.metrics.slices import MIN_CONSPICUITY

log = logging.getLogger(__name__)
DEFAULT_FARS = (0.01, 0.05, 0.10)


def load_records(dataset: str, kind: str | None, split: str | None, limit: int | None):
    from xscan.data.registry import detect_format, load_dataset

    kind = kind or detect_format(dataset)
    col = load_dataset(kind, dataset, split)
    records = list(col.records)[:limit] if limit else list(col.records)
    if not records:
        raise ValueError(f"{dataset}: no scans found (format {kind}, split {split})")
    return records, kind


def predict_checkpoint(
    path: Path, records, batch_size: int, workers: int, scan_views: int | None = None
):
    import torch
    from torch.utils.data import DataLoader

    from xscan.data.torch_dataset import DetectionDataset, collate_detections
    from xscan.models import build_model
    from xscan.train.checkpoint import load_checkpoint
    from xscan.train.engine import predict

    ckpt = load_checkpoint(path)
    spec = ckpt["spec"]
    if spec.task != "detect":
        raise ValueError(f"{path}: spec.task is {spec.task!r}, not a detector")
    if scan_views is not None:
        spec = ckpt["spec"] = spec.replace(scan_views=scan_views)
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    ds = DetectionDataset(records, spec)
    loader = DataLoader(
        ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_detections
    )
    gts, preds = predict(model, loader, spec, torch.device("cpu"))
    return spec, gts, preds, ckpt


def predict_onnx(path: Path, records, batch_size: int, scan_views: int | None = None):
    from xscan.data.sample import load_record
    from xscan.runtime import load_model

    model = load_model(path)
    graph_views = getattr(model, "graph_views", 1)
    if scan_views is not None and graph_views > 1 and scan_views != graph_views:
        raise ValueError(
            f"{path}: the graph runs {graph_views} views, so --scan-views {scan_views} cannot "
            "apply; evaluate the checkpoint with it, or export it again with that view count"
        )
    if scan_views is not None:
        model.spec = model.spec.replace(scan_views=scan_views)
    spec = model.spec
    index = {c: i for i, c in enumerate(spec.class_names)}
    gts, preds = [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        samples = [load_record(r, spec.modality) for r in chunk]
        results = model.predict_batch([s.image for s in samples])
        for s, p in zip(samples, results, strict=True):
            iid = len(gts) + 1
            keep = [i for i, lbl in enumerate(s.labels) if lbl in index]
            gts.append(
                {
                    "image_id": iid,
                    "boxes": np.asarray(s.boxes, np.float32).reshape(-1, 4)[keep],
                    "labels": np.array([index[s.labels[i]] for i in keep], np.int64),
                    "height": int(s.image.shape[0]),
                    "width": int(s.image.shape[1]),
                    "image_score": float(p.image_score),
                    "is_threat": bool(s.is_threat),
                    "path": s.path,
                }
            )
            preds.append(
                {"image_id": iid, "boxes": p.boxes, "scores": p.scores, "labels": p.classes}
            )
    return spec, gts, preds


def run_eval(args) -> int:
    from xscan.train.engine import metrics_from_predictions, summary

    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: model not found")
    task = _task(model_path)
    if task == "anomaly":
        from xscan.metrics import anomaly

        return anomaly.run_eval(args)
    records, kind = load_records(args.dataset, args.format, args.split, args.limit)
    fars = tuple(args.far or DEFAULT_FARS)
    ckpt = None
    if model_path.suffix == ".onnx":
        if args.calibrate:
            raise ValueError(
                f"{model_path}: --calibrate writes into a checkpoint; calibrate the "
                ".pt and export it again so the ONNX file carries the thresholds"
            )
        spec, gts, preds = predict_onnx(model_path, records, args.batch_size, args.scan_views)
    else:
        spec, gts, preds, ckpt = predict_checkpoint(
            model_path, records, args.batch_size, args.workers, args.scan_views
        )
    has_boxes = any(r.objects for r in records)
    for g in gts:
        g["has_boxes"] = has_boxes
    metrics = metrics_from_predictions(gts, preds, spec.class_names, fars, records)
    given = {op.name: op.threshold for op in spec.operating_points}
    scores = np.array([g["image_score"] for g in gts])
    threat = np.array([g["is_threat"] for g in gts], bool)
    out = Path(args.out or Path("runs") / "eval" / f"{model_path.stem}_{Path(args.dataset).name}")
    out.mkdir(parents=True, exist_ok=True)
    report = _report(metrics, spec, given, scores, threat, model_path, args.dataset, kind)
    _write_curves(metrics, scores, threat, out)
    (out / "metrics.json").write_text(json.dumps(json_safe(report), indent=2))
    _print(report, out)
    if args.calibrate:
        _calibrate(model_path, ckpt, scores, threat, fars, args, metrics, summary)
    return 0


def _task(path: Path) -> str:
    if path.suffix == ".onnx":
        from xscan.runtime.metadata import read_spec

        return read_spec(path).task
    from xscan.train.checkpoint import load_checkpoint

    return load_checkpoint(path)["spec"].task


def _report(metrics, spec, given, scores, threat, model_path, dataset, kind) -> dict[str, Any]:
    from xscan.metrics.alarm import rates_at_threshold

    coco = metrics["coco"]
    if coco is not None:
        coco = {k: v for k, v in coco.items() if k != "pr50"}
    alarm = dict(metrics["alarm"])
    if given and (threat.any() or (~threat).any()):
        alarm["model_operating_points"] = {
            n: rates_at_threshold(scores, threat, t) for n, t in given.items()
        }
    return {
        "model": str(model_path),
        "dataset": str(dataset),
        "format": kind,
        "model_name": spec.name,
        "class_names": list(spec.class_names),
        "scan_views": spec.scan_views,
        "coco": coco,
        "coco_conspicuous": metrics.get("coco_conspicuous"),
        "alarm": alarm,
        "sliced": metrics["sliced"],
    }


def _write_curves(metrics, scores, threat, out: Path) -> None:
    if metrics["coco"] is not None:
        plot_pr(metrics["coco"]["pr50"], out / "pr_curve.png")
    if threat.any() and (~threat).any():
        far, dr, _ = roc_curve(scores, threat)
        marks = {n: (r["far"], r["detection_rate"]) for n, r in metrics["alarm"]["at_far"].items()}
        plot_roc(far, dr, out / "roc_curve.png", metrics["alarm"]["auroc"], marks)


def _print(report: dict[str, Any], out: Path) -> None:
    coco = report["coco"]
    if coco is not None:
        print(
            f"mAP@[.5:.95] {coco['mAP']:.4f}  AP50 {coco['AP50']:.4f}  "
            f"AP50 any class {coco['AP50_any_class']:.4f}  "
            f"({coco['n_images']} scans, {coco['n_gt']} objects)"
        )
        for name, c in coco["per_class"].items():
            if c["n_gt"]:
                print(f"  {name:<16} AP {c['AP']:.4f}  AP50 {c['AP50']:.4f}  n={c['n_gt']}")
    shown = report.get("coco_conspicuous")
    if shown is not None:
        print(
            f"threats that show (conspicuity >= {shown['min_conspicuity']:g}; "
            f"{shown['n_ignored']} of {shown['n_gt']} objects fainter, ignored): "
            f"mAP@[.5:.95] {shown['mAP']:.4f}  AP50 {shown['AP50']:.4f}  "
            f"AP50 any class {shown['AP50_any_class']:.4f}"
        )
    a = report["alarm"]
    views = report.get("scan_views", 1)
    print(
        f"bag level: {a['n_threat']} threat / {a['n_benign']} benign scans, AUROC {a['auroc']:.4f}"
        + (f" (scan score: mean over {views} views)" if views > 1 else "")
    )
    for name, r in a["at_far"].items():
        print(
            f"  {name}: detection rate {r['detection_rate']:.4f} at FAR {r['far']:.4f} "
            f"(threshold {r['threshold']:.4f})"
        )
    for name, r in a.get("model_operating_points", {}).items():
        print(
            f"  model's {name} threshold {r['threshold']:.4f}: detection rate "
            f"{r['detection_rate']:.4f}, FAR {r['far']:.4f}"
        )
    _print_by_class(report)
    print(f"wrote {out / 'metrics.json'}")


def _print_by_class(report: dict[str, Any]) -> None:
    """Detection rate per threat class at each calibrated FAR: over the scans holding the
    class, and over those whose threats are all of that class."""
    held = report["sliced"].get("threat_class") or {}
    only = report["sliced"].get("only_class") or {}
    fars = list(report["alarm"]["at_far"])
    if not held or not fars:
        return

    def rates(r: dict[str, Any]) -> str:
        return " / ".join(f"{r['at_far'][f]:.2f}" for f in fars) + f" (n={r['n_threat']})"

    print(f"  by threat class, detection rate at {' / '.join(fars)}: scans holding it; only it")
    for name in report["class_names"]:
        if name in held:
            tail = f";  {rates(only[name])}" if name in only else ""
            print(f"    {name:<16} {rates(held[name])}{tail}")
    vis = report["sliced"].get("visibility") or {}
    if vis:
        print(f"  by its most conspicuous threat (conspicuity >= {MIN_CONSPICUITY:g} shows):")
        for name in ("shows", "faint"):
            if name in vis:
                print(f"    {name:<16} {rates(vis[name])}")


def _calibrate(model_path, ckpt, scores, threat, fars, args, metrics, summary) -> None:
    from xscan.metrics.alarm import far_name
    from xscan.train.checkpoint import save_checkpoint

    if not (~threat).any():
        raise ValueError(f"{args.dataset}: no benign scans to calibrate thresholds on")
    points = operating_points(
        scores[~threat],
        fars,
        scores[threat] if threat.any() else None,
        source=f"benign scans of {args.dataset}",
    )
    default = far_name(args.default_far)
    names = [p.name for p in points]
    if default not in names:
        raise ValueError(f"--default-far {args.default_far}: not among the rates {list(fars)}")
    spec = ckpt["spec"]
    info = {
        **spec.info,
        "calibration": {"dataset": str(args.dataset), "metrics": json_safe(summary(metrics))},
    }
    ckpt["spec"] = spec.replace(info=info).with_operating_points(points, default=default)
    target = (
        model_path
        if args.in_place
        else model_path.with_name(f"{model_path.stem}.calibrated{model_path.suffix}")
    )
    save_checkpoint(target, **ckpt)
    where = "in place" if args.in_place else "to a new file"
    print(
        f"wrote operating points {', '.join(f'{p.name}={p.threshold:.4f}' for p in points)} "
        f"(default {default}) {where}: {target}"
    )
