"""Anomaly heat overlays: one colour scale around the alarm threshold for every scan."""

from __future__ import annotations

import numpy as np

from xscan.runtime.overlay import draw_prediction
from xscan.runtime.prediction import Prediction, empty_detections


def _pred(amap: np.ndarray, threshold: float = 3.0) -> Prediction:
    boxes, scores, classes = empty_detections()
    score = float(amap.max())
    return Prediction(
        boxes=boxes,
        scores=scores,
        classes=classes,
        labels=[],
        image_score=score,
        alarm=score >= threshold,
        threshold=threshold,
        anomaly_map=amap.astype(np.float32),
    )


def test_heat_is_transparent_well_below_the_threshold_and_same_colour_for_same_score():
    image = np.full((60, 80, 3), 200, np.uint8)
    benign = np.full((60, 80), -7.0, np.float32)  # open air: far below any alarm
    benign[:, 40:] = 0.5  # still more than two units below the threshold (3.0)
    out = draw_prediction(image, _pred(benign))
    # no tint anywhere (the banner text is drawn at the bottom-left)
    assert np.array_equal(out[:40], np.full((40, 80, 3), 200, np.uint8))
    alarm = benign.copy()
    alarm[10:20, 10:20] = 4.0  # above the threshold
    other = np.full((60, 80), 4.0, np.float32)
    a = draw_prediction(image, _pred(alarm))
    b = draw_prediction(image, _pred(other))
    assert not np.array_equal(a[15, 15], image[15, 15])
    assert np.array_equal(a[15, 15], b[15, 15])  # same score, same colour, whatever the scan
    assert np.array_equal(a[30, 70], image[30, 70])
