"""The result of running a model on one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """What a model says about one image, in the image's original pixel coordinates.

    * ``boxes``: ``(N, 4) float32`` xyxy in original pixels (empty for anomaly models).
    * ``scores``: ``(N,) float32`` detection scores in [0, 1], highest first.
    * ``classes``: ``(N,) int64`` indices into ``spec.class_names``; ``labels`` the names.
    * ``image_score``: the highest detection score (0 when none) for a detector; the
      normalised anomaly score for an anomaly model.
    * ``alarm``: ``image_score >= threshold``; ``threshold`` is the one that decided.
    * ``anomaly_map``: ``(H, W) float32`` normalised anomaly map at original resolution
      (anomaly models only).
    * ``tiles``: how many tiles the image was cut into (1 = whole image in one pass).
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: list[str]
    image_score: float
    alarm: bool
    threshold: float
    anomaly_map: np.ndarray | None = None
    tiles: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_detections(self) -> int:
        return int(len(self.scores))

    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """A JSON-ready dict (no numpy types). The anomaly map is summarised, not included."""
        dets = [
            {
                "box": [round(float(v), decimals) for v in box],
                "score": round(float(s), 5),
                "class_id": int(c),
                "label": label,
            }
            for box, s, c, label in zip(
                self.boxes, self.scores, self.classes, self.labels, strict=True
            )
        ]
        out: dict[str, Any] = {
            "detections": dets,
            "image_score": round(float(self.image_score), 5),
            "alarm": bool(self.alarm),
            "threshold": float(self.threshold),
            "tiles": int(self.tiles),
        }
        if self.anomaly_map is not None:
            out["anomaly_map_shape"] = list(self.anomaly_map.shape)
            out["anomaly_map_max"] = round(float(self.anomaly_map.max()), 5)
        out.update(self.extra)
        return out


def empty_detections() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (0, 4) float32, scores (0,) float32, classes (0,) int64)``."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
