from __future__ import annotations

import numpy as np
import pytest

from xscan.metrics.alarm import (
    alarm_metrics,
    auroc,
    calibrate_threshold,
    far_name,
    operating_points,
    roc_curve,
    sliced_alarm_metrics,
)


def test_calibration_on_a_known_distribution():
    benign = np.arange(100) / 100.0  # 0.00 .. 0.99
    t5 = calibrate_threshold(benign, 0.05)
    assert 0.94 < t5 <= 0.95  # exactly 0.95..0.99 alarm: 5 of 100
    assert (benign >= t5).sum() == 5
    assert (benign >= calibrate_threshold(benign, 0.01)).sum() == 1
    assert (benign >= calibrate_threshold(benign, 0.10)).sum() == 10
    assert (benign >= calibrate_threshold(benign, 0.0)).sum() == 0
    # Ties can only make the calibrated FAR lower than the target, never higher.
    tied = np.r_[np.zeros(90), np.full(10, 0.5)]
    assert (tied >= calibrate_threshold(tied, 0.05)).mean() <= 0.05


def test_calibration_on_gaussian_scores_meets_target():
    rng = np.random.default_rng(0)
    benign = rng.normal(0.0, 1.0, 10_000)
    t = calibrate_threshold(benign, 0.05)
    assert t == pytest.approx(1.645, abs=0.05)  # the normal 95th percentile


def test_auroc_and_roc():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    far, dr, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert far.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert dr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.trapezoid(dr, far) == pytest.approx(auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))


def test_alarm_metrics_and_operating_points():
    benign = np.arange(100) / 100.0
    threat = np.r_[np.full(90, 0.97), np.full(10, 0.5)]
    scores = np.r_[benign, threat]
    labels = np.r_[np.zeros(100), np.ones(100)]
    m = alarm_metrics(scores, labels, (0.01, 0.05))
    assert m["at_far"]["far5"]["far"] == pytest.approx(0.05)
    assert m["at_far"]["far5"]["detection_rate"] == pytest.approx(0.90)
    assert m["at_far"]["far1"]["detection_rate"] == pytest.approx(0.0)
    ops = operating_points(benign, (0.05, 0.10), threat, source="val")
    assert [o.name for o in ops] == ["far5", "far10"] and far_name(0.005) == "far0.5"
    assert ops[0].detection_rate == pytest.approx(0.9) and ops[0].far == pytest.approx(0.05)
    sliced = sliced_alarm_metrics(scores, labels, {"level": [None] * 100 + [0] * 90 + [3] * 10})
    assert sliced["level"]["0"]["at_far"]["far5"] == 1.0
    assert sliced["level"]["3"]["at_far"]["far5"] == 0.0


def test_sliced_alarm_metrics_counts_a_scan_under_each_of_its_classes():
    benign = np.arange(20) / 20.0  # far5 threshold: 0.95
    scores = np.r_[benign, [0.99, 0.99, 0.5, 0.5]]
    labels = np.r_[np.zeros(20), np.ones(4)]
    held = [()] * 20 + [("firearm",), ("firearm", "knife"), ("knife",), ("lighter",)]
    only = [None] * 20 + ["firearm", None, "knife", "lighter"]
    sliced = sliced_alarm_metrics(scores, labels, {"held": held, "only": only}, (0.05,))
    assert sliced["held"]["firearm"] == {"n_threat": 2, "at_far": {"far5": 1.0}}
    assert sliced["held"]["knife"] == {"n_threat": 2, "at_far": {"far5": 0.5}}
    assert sliced["only"]["knife"] == {"n_threat": 1, "at_far": {"far5": 0.0}}
    assert set(sliced["held"]) == {"firearm", "knife", "lighter"}
    with pytest.raises(ValueError, match="slicing 'held': 3 values for 24 scans"):
        sliced_alarm_metrics(scores, labels, {"held": held[:3]})
