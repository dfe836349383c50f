"""How close synthetic false-colour scans look to real ones: image statistics and distances.

Every image is first resized so its long side is ``SIDE`` pixels. Statistics per image:

* ``background``: share of near-white pixels (min channel > 215 and saturation < 40).
* ``hue_classes``: among the other pixels, the share that is orange (organic), green
  (inorganic), blue (metal), black (nothing passes: V < 45) and other, with OpenCV hue bins
  orange 5–34, green 35–84, blue 85–134 (OpenCV hue is 0–179).
* ``brightness`` per hue class: an 8-bin histogram of V (HSV value) within the class.
* ``edge_density``: share of Canny edge pixels (thresholds 60/150 on gray) among the
  foreground pixels.
* ``clutter``: mean standard deviation of gray level over the 16×16 blocks that are mostly
  foreground (how busy the inside of a bag is).

Distances between a real and a synthetic set: total-variation distance (0 = same, 1 =
disjoint) between the mean hue-class distributions and between the mean brightness histograms
of each class; for scalar statistics the difference of means in units of the real set's
standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIDE = 512
HUE_CLASSES = ("orange", "green", "blue", "black", "other")
_HUE_BINS = ((5, 35), (35, 85), (85, 135))


@dataclass
class ImageStats:
    """Statistics of one false-colour image (see the module docstring)."""

    background: float
    hue_classes: np.ndarray  # (5,) shares summing to 1
    brightness: np.ndarray  # (5, 8) V histograms per class, each summing to 1 (or 0)
    edge_density: float
    clutter: float


def resize_long_side(rgb: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Resize ``(H, W, 3) uint8`` so that ``max(H, W) == side`` (area interpolation)."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def image_stats(rgb: np.ndarray) -> ImageStats:
    """Statistics of an ``(H, W, 3) uint8`` RGB false-colour scan."""
    img = resize_long_side(rgb)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    bg = (img.min(-1) > 215) & (s < 40)
    fg = ~bg
    n_fg = max(int(fg.sum()), 1)
    black = fg & (v < 45)
    classes = []
    for lo, hi in _HUE_BINS:
        classes.append(fg & ~black & (h >= lo) & (h < hi))
    classes.append(black)
    classes.append(fg & ~black & ~classes[0] & ~classes[1] & ~classes[2])
    shares = np.array([c.sum() / n_fg for c in classes], np.float64)
    bright = np.zeros((len(classes), 8), np.float64)
    for i, c in enumerate(classes):
        if c.any():
            hist = np.bincount(v[c] // 32, minlength=8)[:8].astype(np.float64)
            bright[i] = hist / hist.sum()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 60, 150) > 0
    edge_density = float((edges & fg).sum() / n_fg)
    return ImageStats(float(bg.mean()), shares, bright, edge_density, _clutter(gray, fg))


def _clutter(gray: np.ndarray, fg: np.ndarray, block: int = 16) -> float:
    hh, ww = (gray.shape[0] // block) * block, (gray.shape[1] // block) * block
    if hh == 0 or ww == 0:
        return 0.0
    g = gray[:hh, :ww].astype(np.float32).reshape(hh // block, block, ww // block, block)
    f = fg[:hh, :ww].reshape(hh // block, block, ww // block, block).mean((1, 3))
    std = g.std((1, 3))
    keep = f > 0.8
    return float(std[keep].mean()) if keep.any() else 0.0


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def compare_sets(real: list[ImageStats], synth: list[ImageStats]) -> dict[str, float]:
    """Distances between two sets of image statistics (keys described in the module doc)."""
    if not real or not synth:
        raise ValueError("compare_sets needs at least one real and one synthetic image")
    out: dict[str, float] = {}
    hr = np.mean([r.hue_classes for r in real], 0)
    hs = np.mean([s.hue_classes for s in synth], 0)
    out["hue_classes_tv"] = _tv(hr, hs)
    for i, name in enumerate(HUE_CLASSES[:4]):
        br = np.mean([r.brightness[i] for r in real], 0)
        bs = np.mean([s.brightness[i] for s in synth], 0)
        if br.sum() > 0 and bs.sum() > 0:
            out[f"brightness_{name}_tv"] = _tv(br / br.sum(), bs / bs.sum())
    for key in ("background", "edge_density", "clutter"):
        a = np.array([getattr(r, key) for r in real])
        b = np.array([getattr(s, key) for s in synth])
        out[f"{key}_real"] = float(a.mean())
        out[f"{key}_synth"] = float(b.mean())
        out[f"{key}_z"] = float((b.mean() - a.mean()) / (a.std() + 1e-9))
    for i, name in enumerate(HUE_CLASSES):
        out[f"share_{name}_real"] = float(hr[i])
        out[f"share_{name}_synth"] = float(hs[i])
    return out


def thumbnail_grid(
    rows: list[list[np.ndarray]], labels: list[str], cell: int = 200, pad: int = 4
) -> np.ndarray:
    """``(H, W, 3) uint8`` grid: each row's images letterboxed into ``cell``² on white, with
    the row's label written down its left margin."""
    label_w = 26
    n_cols = max(len(r) for r in rows)
    grid = np.full(
        (len(rows) * (cell + pad) + pad, label_w + n_cols * (cell + pad) + pad, 3), 255, np.uint8
    )
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        y = pad + i * (cell + pad)
        for j, img in enumerate(row):
            t = resize_long_side(img, cell)
            x = label_w + pad + j * (cell + pad)
            oy, ox = (cell - t.shape[0]) // 2, (cell - t.shape[1]) // 2
            grid[y + oy : y + oy + t.shape[0], x + ox : x + ox + t.shape[1]] = t
        text = np.full((label_w, cell, 3), 255, np.uint8)
        cv2.putText(text, label, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        grid[y : y + cell, :label_w] = np.rot90(text)
    return grid
