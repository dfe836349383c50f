"""Scoring whole scans with an anomaly model in PyTorch, the way the runtime does with ONNX.

Training uses this to calibrate on held-out benign scans and evaluation on checkpoints, so
the raw scores a threshold is calibrated on are computed exactly as at inference: a scan that
fits the input (downscale <= 2) is letterboxed whole; a larger one (cargo) is cut into tiles of
``spec.input_size`` at native resolution with ``spec.tile_overlap`` (the runtime's own
:mod:`xscan.runtime.tiling`), the tile maps are stitched back without seams, and the scan
score follows the spec (maximum tile score, maximum of the stitched map, or the score of the
location-standardised map: :func:`xscan.runtime.anomaly.scan_map_score`, the runtime's own
function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xscan.preprocess import letterbox, to_modality
from xscan.runtime.anomaly import scan_map_score
from xscan.runtime.tiling import should_tile, stitch_maps, tile_grid
from xscan.spec import ModelSpec

# (B, C, H, W) float32 in [0, 1] -> (maps (B, 1, h, w), scores (B,)), both numpy
BatchFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class ScanScore:
    """Raw score of one scan and its raw anomaly map ``(H, W) float32`` at scan resolution
    (location-standardised when the spec has ``location_normalization``; before
    ``score_normalization``)."""

    score: float
    amap: np.ndarray
    tiles: int


def _inputs(x: np.ndarray, spec: ModelSpec, windows: list[tuple[int, int, int, int]]):
    batch, infos = [], []
    for y0, x0, y1, x1 in windows:
        inp, info = letterbox(x[y0:y1, x0:x1], spec.input_size, spec.pad_value, spec.resize)
        batch.append(inp.transpose(2, 0, 1))
        infos.append(info)
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32), infos


def score_scan(
    image: np.ndarray, spec: ModelSpec, run: BatchFn, batch_size: int = 8, convert: bool = True
) -> ScanScore:
    """Score one decoded scan (``convert``: apply ``to_modality`` first; else ``image`` is
    already ``(H, W, C) float32`` in [0, 1] for the spec's modality)."""
    x = to_modality(image, spec.modality) if convert else image
    h, w = x.shape[:2]
    if should_tile(h, w, spec.input_size):
        tiles = tile_grid(h, w, spec.input_size, spec.tile_overlap)
        windows = [(t.y0, t.x0, t.y1, t.x1) for t in tiles]
    else:
        tiles, windows = None, [(0, 0, h, w)]
    maps, scores = [], []
    for i in range(0, len(windows), batch_size):
        inp, infos = _inputs(x, spec, windows[i : i + batch_size])
        m, s = run(inp)
        scores.extend(float(v) for v in s)
        maps.extend(info.map_to_original(mm[0]) for mm, info in zip(m, infos, strict=True))
    if tiles is None:
        amap, score = scan_map_score(maps[0], scores[0], spec)
        return ScanScore(score, amap, 1)
    amap, score = scan_map_score(
        stitch_maps(maps, tiles, (h, w), spec.tile_overlap), max(scores), spec
    )
    return ScanScore(score, amap, len(tiles))


def torch_runner(model, threads: int | None = None) -> BatchFn:
    """A :data:`BatchFn` over an ``nn.Module`` returning ``(maps, scores)`` tensors."""
    import torch

    model.eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            m, s = model(torch.from_numpy(batch))
        return m.numpy(), s.numpy()

    return run


def onnx_runner(path: str, threads: int | None = None) -> BatchFn:
    """A :data:`BatchFn` over an exported anomaly model (plain onnxruntime session)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, s = sess.run(["anomaly_map", "scores"], {"images": batch})
        return m, s

    return run
