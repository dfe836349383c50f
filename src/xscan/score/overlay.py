"""Drawing results on scans: detection boxes, anomaly heat maps, thumbnails.

All functions take and return RGB ``(H, W, 3) uint8`` images; boxes are ``xyxy`` in the
pixels of the image they are drawn on.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Distinct colours (RGB) per class index.
_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (128, 128, 0),
)


def to_display(image: np.ndarray) -> np.ndarray:
    """Any decoded scan -> RGB uint8 for viewing.

    uint16 is scaled by 1/257; a raw dual-energy pair ``(H, W, 2) float32`` shows its
    low-energy transmission; grayscale is replicated to three channels.
    """
    img = np.asarray(image)
    if img.dtype == np.float32 or img.dtype == np.float64:
        if img.ndim == 3 and img.shape[2] == 2:
            img = img[:, :, 0]
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def draw_detections(
    image: np.ndarray, detections: Sequence[dict[str, Any]], scale: float = 1.0
) -> np.ndarray:
    """Draw ``detections`` (``results.jsonl`` dicts: ``box`` xyxy original px, ``class``,
    ``class_id``, ``score``) on an RGB uint8 image shown at ``scale`` of the original."""
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 250))
    font = max(0.35, min(h, w) / 900)
    for d in detections:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in d["box"])
        color = _PALETTE[int(d.get("class_id", 0)) % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        text = f"{d['class']} {d['score']:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = max(th + base, y1)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty), color, -1)
        cv2.putText(
            out,
            text,
            (x1 + 1, ty - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out


def draw_heatmap(image: np.ndarray, amap: np.ndarray, threshold: float) -> np.ndarray:
    """Blend a normalised anomaly map ``(h, w) float32`` (any resolution) over an RGB
    ``image`` on the runtime's one scale around the alarm ``threshold``
    (:func:`xscan.runtime.overlay.draw_heat`: the same colours as ``xscan predict``)."""
    from xscan.runtime.overlay import draw_heat

    return draw_heat(image, amap, threshold, alpha=0.6, rgb=True)


def thumbnail(image: np.ndarray, max_side: int = 320) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side``; returns ``(image, scale)``."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return image, 1.0
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), s


def jpeg_base64(image: np.ndarray, quality: int = 80) -> str:
    """RGB uint8 -> ``data:image/jpeg;base64,...`` URI for inline HTML."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def render_result(
    image: np.ndarray,
    rec: dict[str, Any],
    anomaly_map: np.ndarray | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """A scan with its result drawn: heat map (anomaly models) or boxes; optionally shrunk."""
    img = to_display(image)
    scale = 1.0
    if max_side:
        img, scale = thumbnail(img, max_side)
    if anomaly_map is not None:
        img = draw_heatmap(img, anomaly_map, float(rec.get("threshold") or 0.0))
    return draw_detections(img, rec.get("detections") or [], scale)


def overlay_path(run_dir: str | Path, rec: dict[str, Any]) -> Path:
    """Where ``--overlays`` writes the drawing of input ``rec``: ``overlays/<index>_<name>.jpg``."""
    name = Path(rec["path"]).name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:80]
    return Path(run_dir) / "overlays" / f"{rec['index']:07d}_{stem}.jpg"


def write_overlay(path: Path, image_rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: cannot write overlay")
