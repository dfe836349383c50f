"""Location normalisation of anomaly maps: fitting, standardising, scoring, spec round trip."""

from __future__ import annotations

import numpy as np
import pytest

from xscan.anomaly.location import fit_location_normalization
from xscan.metrics.alarm import calibrate_threshold
from xscan.runtime.anomaly import location_score, location_standardize, scan_map_score
from xscan.spec import ModelSpec, SpecError

H, W = 64, 128


def _blob(cy: float, cx: float, sigma: float = 6.0) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def _benign_map(rng: np.random.Generator) -> np.ndarray:
    """Noise around 1.0, with a benign hot spot (a tractor detail) always at the same place,
    as smooth as a smoothed patch-distance map."""
    m = 1.0 + 0.1 * rng.standard_normal((H, W)).astype(np.float32)
    return m + (3.0 + 0.3 * rng.standard_normal()) * _blob(48, 110)


def _spec(**kw) -> ModelSpec:
    return ModelSpec(
        task="anomaly", class_names=("anomaly",), input_size=(32, 32), arch="toy", **kw
    ).validate()


@pytest.fixture(scope="module")
def loc():
    rng = np.random.default_rng(0)
    return fit_location_normalization(
        [_benign_map(rng) for _ in range(20)], grid=(8, 16), std_floor=0.25, score="max"
    )


def test_benign_hot_spot_is_standardised_away_a_new_one_is_not(loc):
    rng = np.random.default_rng(1)
    benign = _benign_map(rng)
    # raw: the benign hot spot dominates the maximum
    assert benign.max() > 3.5
    z_benign = location_standardize(benign, loc)
    assert z_benign.shape == (H, W) and z_benign.dtype == np.float32
    # the same hot spot at its usual place: no higher than noise elsewhere
    assert np.abs(z_benign[42:54, 104:116]).max() < 3.0
    anomalous = _benign_map(rng) + 3.0 * _blob(16, 30)  # as strong, where benign maps are quiet
    z_anom = location_standardize(anomalous, loc)
    y, x = np.unravel_index(np.argmax(z_anom), z_anom.shape)
    assert 10 <= y < 22 and 24 <= x < 36
    assert location_score(z_anom, loc) > 3 * location_score(z_benign, loc)


def test_maps_of_another_size_use_the_same_normalised_coordinates(loc):
    rng = np.random.default_rng(2)
    big = np.kron(_benign_map(rng), np.ones((2, 2), np.float32))  # the same scan at 2x pixels
    z = location_standardize(big, loc)
    assert z.shape == (2 * H, 2 * W)
    assert np.abs(z[84:108, 208:232]).max() < 3.0


def test_top_fraction_score_and_no_location_is_the_old_behaviour(loc):
    z = np.zeros((10, 100), np.float32)
    z.flat[:10] = 5.0  # 1 % of the pixels
    assert location_score(z, {**loc, "score": "top_fraction", "top_fraction": 0.01}) == 5.0
    assert location_score(z, {**loc, "score": "top_fraction", "top_fraction": 0.02}) == 2.5
    assert location_score(z, loc) == 5.0
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    amap, score = scan_map_score(raw, 7.5, _spec())
    np.testing.assert_array_equal(amap, raw)
    assert score == 7.5


def test_map_max_scan_score_takes_the_stitched_map_maximum():
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    amap, score = scan_map_score(raw, 7.5, _spec(scan_score="map_max"))
    np.testing.assert_array_equal(amap, raw)
    assert score == 11.0
    spec = _spec(scan_score="map_max")
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match="scan_score"):
        _spec(scan_score="mean").validate()


def test_calibrated_threshold_gives_the_requested_far_on_standardised_scores(loc):
    rng = np.random.default_rng(3)
    scores = np.array(
        [location_score(location_standardize(_benign_map(rng), loc), loc) for _ in range(400)]
    )
    fresh = np.array(
        [location_score(location_standardize(_benign_map(rng), loc), loc) for _ in range(400)]
    )
    for far in (0.05, 0.10):
        t = calibrate_threshold(scores, far)
        assert float((scores >= t).mean()) == pytest.approx(far, abs=1e-9)
        assert float((fresh >= t).mean()) == pytest.approx(far, abs=0.04)


def test_spec_round_trip_old_specs_and_errors(loc):
    spec = _spec(location_normalization=loc)
    back = ModelSpec.from_json(spec.to_json())
    assert back.location_normalization["grid"] == [8, 16]
    np.testing.assert_allclose(
        location_standardize(np.ones((H, W), np.float32), back.location_normalization),
        location_standardize(np.ones((H, W), np.float32), loc),
    )
    old = spec.to_dict()
    del old["location_normalization"]  # a model written before the field existed
    assert ModelSpec.from_dict(old).location_normalization == {}
    with pytest.raises(SpecError, match="location_normalization.std"):
        _spec(location_normalization={**loc, "std": [[0.0] * 16] * 8})
    with pytest.raises(SpecError, match="location_normalization.mean"):
        _spec(location_normalization={**loc, "mean": [[1.0] * 15] * 8})
    with pytest.raises(SpecError, match="location_normalization.score"):
        _spec(location_normalization={**loc, "score": "median"})
    with pytest.raises(ValueError, match="at least 2"):
        fit_location_normalization([np.ones((4, 4))])
