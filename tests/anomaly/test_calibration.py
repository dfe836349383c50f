from __future__ import annotations

import numpy as np
import pytest

from xscan.metrics.alarm import calibrate_threshold
from xscan.metrics.anomaly import aupro, calibrate, normalise, pixel_auroc


def far_at(scores, threshold):
    return float((np.asarray(scores) >= threshold).mean())


def test_threshold_gives_requested_far_on_known_distribution():
    rng = np.random.default_rng(0)
    benign = rng.normal(0.0, 1.0, 20_000)
    for far in (0.01, 0.05, 0.10):
        t = calibrate_threshold(benign, far)
        assert far_at(benign, t) == pytest.approx(far, abs=1e-9)
        # and on fresh scans of the same distribution, close to the normal quantile
        fresh = rng.normal(0.0, 1.0, 200_000)
        assert far_at(fresh, t) == pytest.approx(far, rel=0.25)


def test_calibrate_stores_normalised_thresholds_and_detection_rate():
    rng = np.random.default_rng(1)
    benign = rng.normal(10.0, 2.0, 1000)
    threat = rng.normal(16.0, 2.0, 500)
    norm, points = calibrate(benign, [0.01, 0.05], source="test", threat_raw=threat)
    assert norm["mean"] == pytest.approx(10.0, abs=0.2)
    assert norm["std"] == pytest.approx(2.0, abs=0.1)
    assert [p.name for p in points] == ["far1", "far5"]
    z = normalise(benign, norm)
    for p in points:
        assert p.far == pytest.approx(p.target_far, abs=1e-9)
        assert far_at(z, p.threshold) == pytest.approx(p.target_far, abs=1e-9)
        assert p.n_benign == 1000
    # N(10, 2) vs N(16, 2): at 5 % FAR the detection rate is about Phi(3 - 1.645) = 0.91
    assert points[1].detection_rate == pytest.approx(0.91, abs=0.04)
    assert (normalise(threat, norm) >= points[1].threshold).mean() == points[1].detection_rate


def test_pixel_metrics_perfect_and_random_maps():
    mask = np.zeros((40, 40), bool)
    mask[5:12, 5:12] = True
    mask[25:35, 20:30] = True
    perfect = mask.astype(np.float32)
    assert pixel_auroc([mask], [perfect]) == pytest.approx(1.0)
    assert aupro([mask], [perfect + 0.01 * np.random.default_rng(0).random(mask.shape)]) > 0.99
    rnd = np.random.default_rng(3).random((40, 40)).astype(np.float32)
    assert 0.3 < pixel_auroc([mask], [rnd]) < 0.7
    # random maps: PRO follows FPR, so the normalised area is about fpr_limit / 2
    assert aupro([mask], [rnd]) == pytest.approx(0.15, abs=0.08)
