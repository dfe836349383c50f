"""Anomaly-detection metrics, calibration of operating points, and heat-map overlays.

Numpy (+ scipy for connected components, OpenCV for images).

* image level: AUROC, detection rate at a fixed false-alarm rate (FAR) on benign scans;
* pixel level (where masks exist): pixel AUROC and AUPRO (area under the per-region-overlap
  curve up to 30 % pixel FPR, normalised to [0, 1], Bergmann et al. MVTec AD, IJCV 2021);
* calibration: score normalisation ``{"mean", "std"}`` of held-out benign raw scores
  (normalised = (raw - mean) / std) and thresholds for target FARs on the normalised score.

Alarm convention: a scan alarms when its (normalised) score is ``>= threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xscan.metrics.alarm import auroc, operating_points
from xscan.spec import OperatingPoint


def score_normalization(benign_raw: np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` of benign raw scores; normalised = (raw - mean) / std."""
    s = np.asarray(benign_raw, np.float64).ravel()
    if s.size < 2:
        raise ValueError("score normalisation needs at least two benign scores")
    return {"mean": float(s.mean()), "std": float(max(s.std(ddof=1), 1e-8))}


def normalise(raw: np.ndarray, norm: dict[str, float]) -> np.ndarray:
    """Raw scores or maps -> normalised, with ``spec.score_normalization``."""
    return (np.asarray(raw, np.float64) - norm["mean"]) / norm["std"]


def calibrate(
    benign_raw: np.ndarray,
    fars: Sequence[float],
    source: str = "",
    threat_raw: np.ndarray | None = None,
) -> tuple[dict[str, float], list[OperatingPoint]]:
    """Score normalisation and one operating point per target FAR (``far1``, ``far5``, ...)
    on the normalised score, calibrated on held-out benign raw scores (the generic
    :func:`xscan.metrics.alarm.operating_points`); detection rates filled in when
    ``threat_raw`` is given."""
    norm = score_normalization(benign_raw)
    threat = None
    if threat_raw is not None and len(threat_raw):
        threat = normalise(threat_raw, norm)
    return norm, operating_points(normalise(benign_raw, norm), fars, threat, source)


# ------------------------------------------------------------------ pixel-level metrics


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    """AUROC over all pixels of all images; ``masks`` bool ``(H, W)``, ``maps`` same shape."""
    y = np.concatenate([np.asarray(m, bool).ravel() for m in masks])
    s = np.concatenate([np.asarray(a, np.float32).ravel() for a in maps])
    return auroc(s, y)


def aupro(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    fpr_limit: float = 0.3,
    n_thresholds: int = 200,
) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` pixel FPR.

    PRO at a threshold is the mean, over connected anomalous regions of all images, of the
    fraction of each region's pixels at or above the threshold. NaN without anomalous pixels.
    """
    from scipy import ndimage

    regions, normal = [], []
    for m, a in zip(masks, maps, strict=True):
        m = np.asarray(m, bool)
        a = np.asarray(a, np.float32)
        labels, n = ndimage.label(m)
        for i in range(1, n + 1):
            regions.append(a[labels == i])
        normal.append(a[~m])
    if not regions:
        return float("nan")
    normal_s = np.sort(np.concatenate(normal))
    if normal_s.size == 0:
        return float("nan")
    # thresholds spanning FPR 0..fpr_limit on normal pixels
    lo = np.quantile(normal_s, 1.0 - fpr_limit)
    hi = max(float(normal_s[-1]), float(max(r.max() for r in regions)))
    thresholds = np.linspace(hi, lo, n_thresholds)
    sorted_regions = [np.sort(r) for r in regions]
    fprs, pros = [], []
    for t in thresholds:
        fprs.append(1.0 - np.searchsorted(normal_s, t, side="left") / normal_s.size)
        pros.append(
            np.mean([1.0 - np.searchsorted(r, t, side="left") / r.size for r in sorted_regions])
        )
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= fpr_limit
    f = np.concatenate([[0.0], fprs[keep], [fpr_limit]])
    p = np.concatenate([[0.0], pros[keep], [pros[keep][-1] if keep.any() else 0.0]])
    return float(np.trapezoid(p, f) / fpr_limit)


# ------------------------------------------------------------------ overlays


def heatmap_overlay(
    image: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, alpha: float = 0.45
) -> np.ndarray:
    """RGB ``(H, W, 3) uint8`` image blended with a jet-coloured ``amap`` (same H, W, any
    scale), values clipped to ``[vmin, vmax]`` before colouring."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    a = np.asarray(amap, np.float32)
    if a.shape != img.shape[:2]:
        a = cv2.resize(a, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    u = np.clip((a - vmin) / max(vmax - vmin, 1e-8), 0, 1)
    heat = cv2.applyColorMap((u * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    w = (alpha * u)[:, :, None]
    return (img * (1 - w) + heat * w).astype(np.uint8)


def write_overlay(
    path: str | Path, image: np.ndarray, amap: np.ndarray, vmin: float, vmax: float
) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = heatmap_overlay(image, amap, vmin, vmax)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f"{path}: cannot write overlay PNG")
    return path


# ------------------------------------------------------------------ xscan eval


def run_eval(args) -> int:
    """``xscan eval`` for an anomaly model (dispatched here by :mod:`xscan.metrics.evaluation`):
    see :mod:`xscan.anomaly.evaluate` for what is measured and written."""
    from xscan.anomaly.evaluate import evaluate, model_spec, summary_lines
    from xscan.anomaly.sources import dataset_refs

    if getattr(args, "calibrate", False):
        raise ValueError(
            f"{args.model}: anomaly models are calibrated when trained (held-out benign scans "
            "of data.val); retrain with this data in data.val to recalibrate"
        )
    spec = model_spec(args.model)
    refs = dataset_refs(
        args.dataset, getattr(args, "format", None), getattr(args, "split", None), spec.modality
    )
    if getattr(args, "limit", None):
        refs = refs[: args.limit]
    out = Path(args.out or Path("eval") / f"{Path(args.model).stem}_{Path(args.dataset).name}")
    result = evaluate(
        args.model,
        refs,
        out,
        far_targets=tuple(args.far or (0.01, 0.05, 0.10)),
        reference_dir=getattr(args, "reference", None),
    )
    for line in summary_lines(result):
        print(line)
    print(f"metrics and overlays: {out}")
    return 0
