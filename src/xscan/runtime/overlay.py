"""Drawing predictions on scans (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from xscan.runtime.prediction import Prediction

# BGR colours per class index (cycled), chosen to stay visible on false-colour scans.
_PALETTE = [(0, 0, 255), (255, 0, 255), (0, 165, 255), (255, 255, 0), (0, 255, 0), (255, 0, 0)]


def to_display_bgr(image: np.ndarray) -> np.ndarray:
    """Any image :mod:`xscan.imageio` returns -> ``(H, W, 3) uint8`` BGR for drawing.

    16-bit images are scaled to 8 bits; a raw dual-energy pair shows its low-energy channel.
    """
    img = np.asarray(image)
    if img.dtype == np.float32 or img.dtype == np.float64:
        img = img[..., 0] if img.ndim == 3 else img
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


# The heat scale of an anomaly map, in units of the normalised score around the alarm
# threshold: transparent up to HEAT_BELOW units under it, full colour HEAT_ABOVE units over it.
HEAT_BELOW = 2.0
HEAT_ABOVE = 2.0


def draw_heat(
    out: np.ndarray, amap: np.ndarray, threshold: float, alpha: float, rgb: bool = False
) -> np.ndarray:
    """Blend a normalised anomaly map over ``out`` (BGR, or RGB with ``rgb``) on one scale
    for every scan: from
    ``threshold - HEAT_BELOW`` (transparent) to ``threshold + HEAT_ABOVE`` (full jet red at
    opacity ``alpha``), so the same colour means the same score in every overlay and a benign
    scan's own low-level structure is not stretched to the full colour range."""
    m = np.asarray(amap, np.float32)
    if m.shape != out.shape[:2]:
        m = cv2.resize(m, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
    lo = float(threshold) - HEAT_BELOW
    u = np.clip((m - lo) / (HEAT_BELOW + HEAT_ABOVE), 0.0, 1.0)
    heat = cv2.applyColorMap((u * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    if rgb:
        heat = heat[:, :, ::-1]
    w = (alpha * u)[:, :, None]
    return (out * (1 - w) + heat * w + 0.5).astype(np.uint8)


def draw_prediction(image: np.ndarray, pred: Prediction, alpha: float = 0.6) -> np.ndarray:
    """``(H, W, 3) uint8`` BGR: boxes with label and score; the anomaly map as a heat overlay
    (:func:`draw_heat`, around the alarm threshold); a banner with the image score and the
    alarm decision."""
    out = to_display_bgr(image)
    h, w = out.shape[:2]
    if pred.anomaly_map is not None:
        out = draw_heat(out, pred.anomaly_map, pred.threshold, alpha)
    thick = max(1, round(min(h, w) / 300))
    for box, score, cls, label in zip(
        pred.boxes, pred.scores, pred.classes, pred.labels, strict=True
    ):
        color = _PALETTE[int(cls) % len(_PALETTE)]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thick)
        text = f"{label} {score:.2f}"
        cv2.putText(out, text, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    state = "ALARM" if pred.alarm else "clear"
    banner = f"{state} score {pred.image_score:.3f} thr {pred.threshold:.3f}"
    color = (0, 0, 255) if pred.alarm else (0, 160, 0)
    cv2.putText(out, banner, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
    return out
