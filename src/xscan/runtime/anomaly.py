"""Anomaly scorer over onnxruntime.

Score normalisation (``spec.score_normalization``), applied to both the image score and the
anomaly map so that both compare with the same threshold:

* ``{"mean": m, "std": s}``: ``(raw - m) / s`` (a z-score against benign scans);
* ``{"min": a, "max": b}``: ``(raw - a) / (b - a)`` (0 = lowest, 1 = highest benign score);
* ``{}``: the raw score.
"""

from __future__ import annotations

import numpy as np

from xscan.preprocess import LetterboxInfo
from xscan.runtime.metadata import ModelFileError
from xscan.runtime.model import OnnxModel
from xscan.runtime.prediction import Prediction, empty_detections
from xscan.runtime.tiling import stitch_maps

ANOMALY_OUTPUTS = ("anomaly_map", "scores")


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
        scores = normalize_scores(outputs["scores"].reshape(len(infos)), norm)
        preds = []
        for b, info in enumerate(infos):
            amap = info.map_to_original(outputs["anomaly_map"][b, 0])
            preds.append(self._make(normalize_scores(amap, norm), float(scores[b]), threshold))
        return preds

    def _predict_tiled(self, image: np.ndarray, threshold: float) -> Prediction:
        tiles = self._tiles(image)
        per_tile = self._run_tiles(image, tiles, threshold)
        amap = stitch_maps(
            [p.anomaly_map for p in per_tile], tiles, image.shape[:2], self.spec.tile_overlap
        )
        score = max(p.image_score for p in per_tile)
        return self._make(amap, score, threshold, tiles=len(tiles))
