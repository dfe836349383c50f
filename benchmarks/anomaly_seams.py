"""Tile seams in a tiled anomaly model's stitched maps, measured on benign scans.

    .venv/bin/python benchmarks/anomaly_seams.py models/xscan-anomaly-cargo.onnx \
        runs/data/anomaly_cargo_calib96/images --n 24

Where the scan is locally uniform (grey-level spread under ``--flat`` in a 33x33 window: open
air, an empty container wall) the true anomaly map is flat, so any pattern that follows the tile
grid there is an artefact of tiling. For each scan the stitched map (normalised, the units of the
operating thresholds) is compared, over flat pixels only, near a seam (within 8 px of the centre
line of an overlap of two neighbouring tiles, where both are equally weighted and both see their
own border) and far from every seam (at least 48 px away). Prints the means over scans of the two
means and of their difference, and the largest per-scan difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from xscan.imageio import IMAGE_SUFFIXES, read_image
from xscan.runtime import load_model
from xscan.runtime.tiling import tile_grid


def _mid_lines(starts: list[int], ends: list[int]) -> list[float]:
    """Centre lines of the overlaps of consecutive tiles along one axis."""
    return [(s + e) / 2.0 for s, e in zip(starts[1:], ends[:-1], strict=True)]


def seam_distance(h: int, w: int, tile_hw: tuple[int, int], overlap: float) -> np.ndarray:
    """``(h, w)`` distance in pixels to the nearest seam: the centre line of an overlap of two
    neighbouring tiles, where both are equally weighted and both see their own border."""
    tiles = tile_grid(h, w, tile_hw, overlap)
    cols = sorted({(t.x0, t.x1) for t in tiles})
    rows = sorted({(t.y0, t.y1) for t in tiles})
    xs = _mid_lines([c[0] for c in cols], [c[1] for c in cols])
    ys = _mid_lines([r[0] for r in rows], [r[1] for r in rows])
    dx = np.full(w, np.inf, np.float32)
    for x in xs:
        dx = np.minimum(dx, np.abs(np.arange(w) - x))
    dy = np.full(h, np.inf, np.float32)
    for y in ys:
        dy = np.minimum(dy, np.abs(np.arange(h) - y))
    return np.minimum(dy[:, None], dx[None, :])


def flat_mask(image: np.ndarray, flat: float) -> np.ndarray:
    g = image.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    if image.dtype == np.uint16:
        g /= 257.0
    mean = cv2.blur(g, (33, 33))
    var = cv2.blur(g * g, (33, 33)) - mean * mean
    return np.sqrt(np.maximum(var, 0)) < flat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--flat", type=float, default=1.0, help="grey-level std (0..255) of 'flat'")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = load_model(args.model, threads=args.threads)
    spec = model.spec
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    near_m, far_m, diffs = [], [], []
    for p in files[: args.n]:
        img = read_image(p)
        pred = model.predict(img)
        if pred.tiles <= 1:
            raise SystemExit(f"{p}: scored as one tile; nothing to measure")
        a = pred.anomaly_map
        d = seam_distance(*a.shape, tuple(spec.input_size), spec.tile_overlap)
        flat = flat_mask(img, args.flat)
        near, far = flat & (d <= 8), flat & (d >= 48)
        if near.sum() < 100 or far.sum() < 100:
            continue
        near_m.append(float(a[near].mean()))
        far_m.append(float(a[far].mean()))
        diffs.append(near_m[-1] - far_m[-1])
    if not diffs:
        raise SystemExit("no scan had enough flat pixels near and far from tile borders")
    tiles = f"tile {spec.input_size} overlap {spec.tile_overlap}"
    print(f"model {args.model}, {len(diffs)} scans, {tiles}")
    print("| flat pixels near seams | far from seams | difference (mean) | (largest) |")
    print(
        f"| {np.mean(near_m):.2f} | {np.mean(far_m):.2f} | {np.mean(diffs):+.2f} "
        f"| {max(diffs, key=abs):+.2f} |"
    )


if __name__ == "__main__":
    main()
