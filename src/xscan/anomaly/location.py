"""Fitting per-location benign statistics of anomaly maps (``spec.location_normalization``).

Cargo scans share a layout: the generator (and a portal scanner) puts the truck across the
full width, the tractor at one end, the load in the container. A patch that is rare among all
benign patches (a tractor detail, a container's corner post) is common at its own place in the
truck, so the raw map of every benign scan is hot there and the scan score (its maximum) is
decided by benign structure. Standardising the map by the benign mean and standard deviation
of the map *at that place* removes this: the scan score then measures how unusual a patch is
for where it is.

Coordinates are normalised scan coordinates: cell ``(i, j)`` of a ``(gh, gw)`` grid covers
rows ``i/gh .. (i+1)/gh`` and columns ``j/gw .. (j+1)/gw`` of the scan, whatever its pixel
size. Statistics are pooled over the pixels of the cell in all benign scans given. The
runtime applies them with :func:`xscan.runtime.anomaly.location_standardize`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np


def fit_location_normalization(
    maps: Iterable[np.ndarray],
    grid: tuple[int, int] = (16, 32),
    std_floor: float = 1.0,
    score: str = "max",
    top_fraction: float = 0.002,
) -> dict[str, Any]:
    """``spec.location_normalization`` from raw stitched maps ``(H, W)`` of benign scans.

    Per cell: mean and standard deviation of the map's pixels over all scans (sizes may
    differ; each scan's map is averaged into the grid, area-weighted). ``std_floor`` is a
    fraction of the standard deviation of all benign pixels: cells where benign maps are
    nearly constant (air above the truck) would otherwise turn noise into large values; on
    synthetic cargo 1.0 measured better than 0.25 (``docs/benchmarks.md``).
    ``score`` / ``top_fraction``: how the runtime turns the standardised map into the scan
    score (see :func:`xscan.runtime.anomaly.location_score`).
    """
    gh, gw = int(grid[0]), int(grid[1])
    if gh <= 0 or gw <= 0:
        raise ValueError(f"location normalisation grid: expected [rows, cols] > 0, got {grid}")
    s1 = np.zeros((gh, gw), np.float64)
    s2 = np.zeros((gh, gw), np.float64)
    t1 = t2 = 0.0
    n = 0
    for m in maps:
        a = np.asarray(m, np.float32)
        if a.ndim != 2:
            raise ValueError(f"location normalisation: expected (H, W) maps, got {a.shape}")
        s1 += cv2.resize(a, (gw, gh), interpolation=cv2.INTER_AREA)
        s2 += cv2.resize(a * a, (gw, gh), interpolation=cv2.INTER_AREA)
        t1 += float(a.mean(dtype=np.float64))
        t2 += float((a.astype(np.float64) ** 2).mean())
        n += 1
    if n < 2:
        raise ValueError(f"location normalisation: need at least 2 benign maps, got {n}")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    global_std = float(np.sqrt(max(t2 / n - (t1 / n) ** 2, 0.0)))
    floor = max(float(std_floor) * global_std, 1e-6)
    std = np.maximum(std, floor)
    return {
        "grid": [gh, gw],
        "mean": [[round(float(v), 6) for v in row] for row in mean],
        "std": [[round(float(v), 6) for v in row] for row in std],
        "score": score,
        "top_fraction": float(top_fraction),
        "std_floor": float(std_floor),
        "scans": n,
    }
