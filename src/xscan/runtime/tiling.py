"""Tiling for scans much larger than the network input (cargo, long line-scan images).

A scan is cut into overlapping tiles of the network input size at native resolution, each
tile is run through the model, and the per-tile results are merged:

* detections: class-aware merging in original pixels. Two same-class boxes from different
  tiles are one object when (a) they overlap with IoU >= ``iou`` (a duplicate seen in the
  overlap), (b) the smaller lies mostly inside the larger (IoM >= ``iom``) and was cut by a
  tile border (a truncated copy of a box seen whole by the other tile), or (c) both were cut
  by the borders of the shared overlap on facing sides and they overlap along the border
  (an object larger than the overlap, seen in two pieces). Groups of plain duplicates keep
  their best box; groups with a cut piece become the union of their boxes. Score = max.
* anomaly maps: blended with weights that fall off towards each tile's inner edges, so the
  stitched map has no seams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A box edge this close to an inner tile border counts as cut by it: a fraction of the tile
# size (a network rarely puts a truncated box's edge exactly on the image edge), at least 2 px.
_BORDER_TOL_FRACTION = 0.03


@dataclass(frozen=True)
class Tile:
    """A window ``[y0:y1, x0:x1]`` of the original image, in pixels."""

    y0: int
    x0: int
    y1: int
    x1: int


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    n = math.ceil((length - tile) / stride) + 1
    # Spread the tiles evenly so the last one ends exactly at the image edge.
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def tile_grid(h: int, w: int, tile_hw: tuple[int, int], overlap: float) -> list[Tile]:
    """Overlapping tiles of ``tile_hw`` covering an ``h x w`` image (row-major order).

    Consecutive tiles overlap by at least ``overlap`` of the tile size; a dimension smaller
    than the tile gets one tile spanning it.
    """
    th, tw = tile_hw
    return [
        Tile(y, x, min(h, y + th), min(w, x + tw))
        for y in _starts(h, th, overlap)
        for x in _starts(w, tw, overlap)
    ]


def should_tile(h: int, w: int, input_hw: tuple[int, int], max_downscale: float = 2.0) -> bool:
    """True when fitting the whole image into the input would shrink it by more than
    ``max_downscale`` (then small threats would vanish)."""
    ih, iw = input_hw
    return min(ih / h, iw / w) < 1.0 / max_downscale


def _cut_sides(boxes: np.ndarray, tiles: list[Tile], h: int, w: int) -> np.ndarray:
    """``(N, 4) bool``: box edge (left, top, right, bottom) lies on an inner tile border."""
    t = np.array([[tl.x0, tl.y0, tl.x1, tl.y1] for tl in tiles], np.float32).reshape(-1, 4)
    inner = np.stack([t[:, 0] > 0, t[:, 1] > 0, t[:, 2] < w, t[:, 3] < h], axis=1)
    size = np.minimum(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1])
    tol = np.maximum(2.0, _BORDER_TOL_FRACTION * size)[:, None]
    near = np.abs(boxes - t) <= tol
    return near & inner


def _pairwise(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    iw, ih = x1 - x0, y1 - y0
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    iou = inter / np.maximum(union, 1e-9)
    iom = inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)
    return iou, iom, iw, ih


def _span_iou(a0: np.ndarray, a1: np.ndarray) -> np.ndarray:
    """1-D IoU of every pair of intervals ``[a0, a1]``."""
    inter = np.clip(
        np.minimum(a1[:, None], a1[None, :]) - np.maximum(a0[:, None], a0[None, :]), 0, None
    )
    union = np.maximum(a1[:, None], a1[None, :]) - np.minimum(a0[:, None], a0[None, :])
    return inter / np.maximum(union, 1e-9)


def _links(boxes, classes, tile_ids, cut, iou_thr, iom_thr) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs are the same object: ``(same (N, N) bool, pieces (N, N) bool)``."""
    iou, iom, iw, ih = _pairwise(boxes)
    candidate = (classes[:, None] == classes[None, :]) & (tile_ids[:, None] != tile_ids[None, :])
    any_cut = cut.any(axis=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smaller_cut = np.where(area[:, None] <= area[None, :], any_cut[:, None], any_cut[None, :])
    truncated = (iom >= iom_thr) & smaller_cut
    # Pieces: i cut on its right and j on its left (or bottom/top), overlapping across it.
    y_match = _span_iou(boxes[:, 1], boxes[:, 3]) >= 0.5
    x_match = _span_iou(boxes[:, 0], boxes[:, 2]) >= 0.5
    lr = cut[:, None, 2] & cut[None, :, 0] & (iw >= 0) & y_match
    tb = cut[:, None, 3] & cut[None, :, 1] & (ih >= 0) & x_match
    pieces = lr | lr.T | tb | tb.T
    same = candidate & ((iou >= iou_thr) | truncated | pieces)
    return same, candidate & (truncated | pieces)


def _groups(same: np.ndarray) -> np.ndarray:
    """Connected components of a symmetric adjacency matrix -> group label per node."""
    n = len(same)
    label = -np.ones(n, np.int64)
    g = 0
    for i in range(n):
        if label[i] >= 0:
            continue
        stack = [i]
        label[i] = g
        while stack:
            k = stack.pop()
            for j in np.nonzero(same[k] & (label < 0))[0]:
                label[j] = g
                stack.append(j)
        g += 1
    return label


def merge_tile_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    tile_ids: np.ndarray,
    tiles: list[Tile],
    image_hw: tuple[int, int],
    iou: float = 0.5,
    iom: float = 0.7,
    max_detections: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge detections from overlapping tiles into one set (see the module docstring).

    ``boxes (N, 4) float32`` xyxy in original pixels, ``scores (N,)``, ``classes (N,) int64``,
    ``tile_ids (N,)`` index into ``tiles``. Returns merged ``(boxes, scores, classes)`` sorted
    by score, highest first.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if len(boxes) == 0:
        return boxes, scores, classes
    tile_ids = np.asarray(tile_ids, np.int64).reshape(-1)
    cut = _cut_sides(boxes, [tiles[i] for i in tile_ids], *image_hw)
    same, partial = _links(boxes, classes, tile_ids, cut, iou, iom)
    label = _groups(same | same.T)
    out_b, out_s, out_c = [], [], []
    for g in range(label.max() + 1):
        idx = np.nonzero(label == g)[0]
        best = idx[np.argmax(scores[idx])]
        if len(idx) > 1 and partial[np.ix_(idx, idx)].any():
            b = np.concatenate([boxes[idx, :2].min(0), boxes[idx, 2:].max(0)])
        else:
            b = boxes[best]
        out_b.append(b)
        out_s.append(scores[best])
        out_c.append(classes[best])
    order = np.argsort(-np.asarray(out_s), kind="stable")[:max_detections]
    return (
        np.asarray(out_b, np.float32)[order].reshape(-1, 4),
        np.asarray(out_s, np.float32)[order],
        np.asarray(out_c, np.int64)[order],
    )


def blend_window(h: int, w: int, tile: Tile, image_hw: tuple[int, int], ramp: int) -> np.ndarray:
    """``(h, w) float32`` weights: 1 inside, falling linearly towards inner tile borders over
    ``ramp`` pixels (image borders keep weight 1 so the scan's edges are not down-weighted)."""
    H, W = image_hw

    def profile(n: int, lo_inner: bool, hi_inner: bool) -> np.ndarray:
        p = np.ones(n, np.float32)
        r = max(1, min(ramp, n // 2))
        ramp_up = (np.arange(r, dtype=np.float32) + 0.5) / r
        if lo_inner:
            p[:r] = ramp_up
        if hi_inner:
            p[n - r :] = np.minimum(p[n - r :], ramp_up[::-1])
        return p

    py = profile(h, tile.y0 > 0, tile.y1 < H)
    px = profile(w, tile.x0 > 0, tile.x1 < W)
    return py[:, None] * px[None, :]


def stitch_maps(
    maps: list[np.ndarray], tiles: list[Tile], image_hw: tuple[int, int], overlap: float
) -> np.ndarray:
    """Blend per-tile maps (each already at its tile's ``(y1-y0, x1-x0)`` size) into one
    ``(H, W) float32`` map without seams."""
    H, W = image_hw
    acc = np.zeros((H, W), np.float32)
    wsum = np.zeros((H, W), np.float32)
    for m, t in zip(maps, tiles, strict=True):
        h, w = t.y1 - t.y0, t.x1 - t.x0
        ramp = int(round(overlap * min(h, w)))
        wt = blend_window(h, w, t, image_hw, ramp)
        acc[t.y0 : t.y1, t.x0 : t.x1] += m * wt
        wsum[t.y0 : t.y1, t.x0 : t.x1] += wt
    return acc / np.maximum(wsum, 1e-6)
