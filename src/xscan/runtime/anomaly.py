"""Anomaly scorer over onnxruntime.

Score normalisation (``spec.score_normalization``), applied to both the image score and the
anomaly map so that both compare with the same threshold:

* ``{"mean": m, "std": s}``: ``(raw - m) / s`` (a z-score against benign scans);
* ``{"min": a, "max": b}``: ``(raw - a) / (b - a)`` (0 = lowest, 1 = highest benign score);
* ``{}``: the raw score.

Location normalisation (``spec.location_normalization``, optional): before the above, the raw
map stitched at scan resolution is standardised per location, ``(map - mean) / std`` with the
benign per-cell statistics bilinearly resized from their coarse grid (normalised scan
coordinates) to the scan, and the raw scan score is taken from that standardised map
(:func:`location_score`) instead of the maximum tile score. A structure that is common at one
place in benign scans (a tractor's engine, a container's corner posts) is then scored against
what benign scans show there, not against the whole scan.

Without location normalisation the raw scan score is, by ``spec.scan_score``, the maximum of
the model's per-tile scores (``tile_max``, the default) or the maximum of the stitched map
(``map_max``): with smoothing inside the graph a tile's own maximum can sit on its smoothed
border, which the stitching down-weights in favour of the neighbouring tile's interior.
"""

from __future__ import annotations

import cv2
import numpy as np

from xscan.preprocess import LetterboxInfo
from xscan.runtime.metadata import ModelFileError
from xscan.runtime.model import OnnxModel
from xscan.runtime.prediction import Prediction, empty_detections
from xscan.runtime.tiling import stitch_maps
from xscan.spec import ANOMALY_OUTPUTS, ModelSpec


def location_grids(loc: dict, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``mean`` and ``std`` grids of ``loc`` resized (bilinear, cell centres at
    ``(i + 0.5) / gh`` of the height) to ``hw = (H, W)`` pixels -> two ``(H, W) float32``."""
    h, w = int(hw[0]), int(hw[1])
    mean = np.asarray(loc["mean"], np.float32)
    std = np.asarray(loc["std"], np.float32)
    return (
        cv2.resize(mean, (w, h), interpolation=cv2.INTER_LINEAR),
        cv2.resize(std, (w, h), interpolation=cv2.INTER_LINEAR),
    )


def location_standardize(amap: np.ndarray, loc: dict) -> np.ndarray:
    """``(H, W)`` raw map of a whole scan -> ``(amap - mean) / std`` per location, float32
    (``loc`` = ``spec.location_normalization``; an empty ``loc`` returns the map unchanged)."""
    a = np.asarray(amap, np.float32)
    if not loc:
        return a
    mean, std = location_grids(loc, a.shape[:2])
    return (a - mean) / std


def location_score(z: np.ndarray, loc: dict) -> float:
    """Raw scan score from a standardised map: its maximum (``score: max``) or the mean of its
    highest ``top_fraction`` of pixels (``score: top_fraction``; at least one pixel)."""
    z = np.asarray(z, np.float32).ravel()
    if loc.get("score", "max") == "max":
        return float(z.max())
    k = min(z.size, max(1, int(round(float(loc["top_fraction"]) * z.size))))
    return float(np.partition(z, z.size - k)[z.size - k :].mean())


def scan_map_score(
    raw_map: np.ndarray, raw_tile_max: float, spec: ModelSpec
) -> tuple[np.ndarray, float]:
    """The raw map and raw score of a whole scan as ``spec`` defines them: with location
    normalisation the standardised map and :func:`location_score`; without, the raw map and,
    by ``spec.scan_score``, the maximum tile score (``tile_max``, the model's own score when
    not tiled) or the maximum of the stitched map (``map_max``)."""
    loc = spec.location_normalization
    if not loc:
        amap = np.asarray(raw_map, np.float32)
        if spec.scan_score == "map_max":
            return amap, float(amap.max())
        return amap, float(raw_tile_max)
    z = location_standardize(raw_map, loc)
    return z, location_score(z, loc)


def normalize_scores(raw: np.ndarray | float, norm: dict[str, float]) -> np.ndarray:
    """Apply ``spec.score_normalization`` (see the module docstring) to raw scores."""
    x = np.asarray(raw, np.float32)
    if not norm:
        return x
    if "mean" in norm and "std" in norm:
        return (x - np.float32(norm["mean"])) / np.float32(max(float(norm["std"]), 1e-12))
    if "min" in norm and "max" in norm:
        span = max(float(norm["max"]) - float(norm["min"]), 1e-12)
        return (x - np.float32(norm["min"])) / np.float32(span)
    raise ValueError(f"score_normalization: expected keys mean/std or min/max, got {sorted(norm)}")


class AnomalyScorer(OnnxModel):
    """An exported anomaly model: outputs ``anomaly_map (B, 1, h, w)`` and ``scores (B,)``.

    ``Prediction.image_score`` is the normalised score, ``anomaly_map`` the normalised map
    resized to the original image; no boxes.
    """

    task = "anomaly"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [n for n in ANOMALY_OUTPUTS if n not in self.session.output_names]
        if missing:
            raise ModelFileError(
                f"{self.path}: anomaly outputs {missing} missing (has "
                f"{self.session.output_names}; expected {list(ANOMALY_OUTPUTS)})"
            )
        normalize_scores(0.0, self.spec.score_normalization)  # fail early on a bad spec

    def _make(self, amap: np.ndarray, score: float, threshold: float, tiles: int = 1):
        boxes, scores, classes = empty_detections()
        return Prediction(
            boxes=boxes,
            scores=scores,
            classes=classes,
            labels=[],
            image_score=float(score),
            alarm=bool(score >= threshold),
            threshold=threshold,
            anomaly_map=amap.astype(np.float32),
            tiles=tiles,
        )

    def _decode(
        self, outputs: dict[str, np.ndarray], infos: list[LetterboxInfo], threshold: float
    ) -> list[Prediction]:
        norm = self.spec.score_normalization
        raw_scores = outputs["scores"].reshape(len(infos))
        preds = []
        for b, info in enumerate(infos):
            amap, score = scan_map_score(
                info.map_to_original(outputs["anomaly_map"][b, 0]),
                float(raw_scores[b]),
                self.spec,
            )
            preds.append(
                self._make(
                    normalize_scores(amap, norm), float(normalize_scores(score, norm)), threshold
                )
            )
        return preds

    def _predict_tiled(self, image: np.ndarray, threshold: float) -> Prediction:
        # raw tile maps are stitched first: location normalisation works on the whole scan
        tiles = self._tiles(image)
        maps: list[np.ndarray] = []
        tile_max = -np.inf
        for infos, out in self._tile_batches(image, tiles):
            for b, info in enumerate(infos):
                maps.append(info.map_to_original(out["anomaly_map"][b, 0]))
            tile_max = max(tile_max, float(np.max(out["scores"])))
        raw = stitch_maps(maps, tiles, image.shape[:2], self.spec.tile_overlap)
        amap, score = scan_map_score(raw, tile_max, self.spec)
        norm = self.spec.score_normalization
        return self._make(
            normalize_scores(amap, norm),
            float(normalize_scores(score, norm)),
            threshold,
            tiles=len(tiles),
        )
