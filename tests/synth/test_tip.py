"""Threat image projection: exact for raw dual-energy, approximate for false colour."""

from __future__ import annotations

import numpy as np
import pytest

from xscan.synth.colormap import false_color
from xscan.synth.render import get_renderer
from xscan.synth.tip import object_mask, project_false_color, project_raw


def _scan_and_object():
    r = get_renderer("baggage")
    h, w = 48, 64
    bag = {"cotton": np.full((h, w), 6.0, np.float32), "aluminium": np.zeros((h, w), np.float32)}
    bag["aluminium"][:, 40:] = 0.4
    t_low, t_high = r.transmission(bag, np.random.default_rng(1))
    knife = {"steel": np.zeros((12, 20), np.float32)}
    knife["steel"][4:8, 2:18] = 0.25
    o_low, o_high = r.transmission(knife, None, noise=False)
    return r, bag, knife, t_low, t_high, o_low, o_high


def test_project_raw_is_the_product() -> None:
    _, _, _, t_low, t_high, o_low, o_high = _scan_and_object()
    low, high = project_raw(t_low, t_high, o_low, o_high, x=30, y=10)
    np.testing.assert_array_equal(low[10:22, 30:50], t_low[10:22, 30:50] * o_low)
    np.testing.assert_array_equal(high[10:22, 30:50], t_high[10:22, 30:50] * o_high)
    outside = np.ones_like(low, bool)
    outside[10:22, 30:50] = False
    np.testing.assert_array_equal(low[outside], t_low[outside])
    # inputs are not modified
    assert not np.array_equal(low, t_low)


def test_project_raw_matches_rendering_the_combined_scene() -> None:
    """Without noise, inserting by multiplication equals rendering bag + object together."""
    r, bag, knife, _, _, o_low, o_high = _scan_and_object()
    clean_low, clean_high = r.transmission(bag, None, noise=False)
    low, high = project_raw(clean_low, clean_high, o_low, o_high, x=30, y=10)
    combined = {k: v.copy() for k, v in bag.items()}
    combined["steel"] = np.zeros_like(bag["cotton"])
    combined["steel"][10:22, 30:50] = knife["steel"]
    ref_low, ref_high = r.transmission(combined, None, noise=False)
    # The product ignores that the bag hardens the beam before it reaches the object, so it
    # slightly over-attenuates (most in the low channel); elsewhere it is identical.
    for prod, ref in ((low, ref_low), (high, ref_high)):
        np.testing.assert_allclose(-np.log(prod), -np.log(ref), rtol=0.15)
        assert np.all(-np.log(prod) >= -np.log(ref) - 1e-4)
    np.testing.assert_allclose(low[:10], ref_low[:10], rtol=1e-6)


def test_project_raw_clips_at_the_border() -> None:
    _, _, _, t_low, t_high, o_low, o_high = _scan_and_object()
    low, _ = project_raw(t_low, t_high, o_low, o_high, x=-5, y=40)
    np.testing.assert_array_equal(low[40:48, 0:15], t_low[40:48, 0:15] * o_low[0:8, 5:20])
    with pytest.raises(ValueError, match="outside"):
        project_raw(t_low, t_high, o_low, o_high, x=100, y=0)


def test_project_false_color_approximates_the_raw_path() -> None:
    _, _, _, t_low, t_high, o_low, o_high = _scan_and_object()
    rgb = false_color(t_low, t_high)
    out = project_false_color(rgb, o_low, o_high, x=30, y=10)
    ref = false_color(*project_raw(t_low, t_high, o_low, o_high, x=30, y=10))
    mask = np.zeros(rgb.shape[:2], bool)
    mask[10:22, 30:50] = object_mask(o_low, o_high)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out[~mask], rgb[~mask])  # untouched outside the object
    diff = np.abs(out[mask].astype(int) - ref[mask].astype(int))
    assert np.median(diff) <= 20, np.median(diff)
    # the inserted steel makes the pixels darker and bluer than the bag was
    assert out[mask].astype(int).sum(1).mean() < rgb[mask].astype(int).sum(1).mean() - 60
    assert (out[mask][:, 2].astype(int) - out[mask][:, 0]).mean() > 0


def test_object_mask() -> None:
    o = np.ones((3, 3), np.float32)
    o[1, 1] = 0.5
    assert object_mask(o, o).sum() == 1
