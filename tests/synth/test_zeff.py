"""Effective Z from dual-energy calibration curves, and the false-colour palette."""

from __future__ import annotations

import numpy as np
import pytest

from xscan.synth.colormap import colour_to_physics, false_color, hue
from xscan.synth.render import get_renderer
from xscan.synth.zeff import Z_EMPTY, Z_MAX, effective_z, pair_from_z

ORDER = ("polyethylene", "water", "aluminium", "iron")


@pytest.mark.parametrize(
    ("kind", "areal"),
    [("baggage", np.geomspace(0.3, 20.0, 8)), ("cargo", np.geomspace(5.0, 150.0, 8))],
)
def test_zeff_orders_materials_over_thickness(kind: str, areal: np.ndarray) -> None:
    """Z_eff from rendered slabs: polyethylene < water < aluminium < iron at every thickness."""
    r = get_renderer(kind)
    zs = []
    for name in ORDER:
        density = {"polyethylene": 0.94, "water": 1.0, "aluminium": 2.699, "iron": 7.874}[name]
        t_low, t_high = r.slab(name, areal / density)
        zs.append(effective_z(t_low[None], t_high[None], kind)[0])
    zs = np.stack(zs)  # (materials, thicknesses)
    assert np.all(np.diff(zs, axis=0) > 0.5), np.round(zs, 2)
    if kind == "baggage":  # the calibration recovers the power-law Z_eff closely
        np.testing.assert_allclose(zs.mean(1), [5.44, 7.42, 13.0, 26.0], atol=0.6)


def test_zeff_on_noisy_scans() -> None:
    r = get_renderer("baggage")
    h, w = 32, 24
    medians = []
    for name, cm in (("polyethylene", 6.0), ("water", 5.0), ("aluminium", 1.5), ("iron", 0.3)):
        t_low, t_high = r.transmission(
            {name: np.full((h, w), cm, np.float32)}, np.random.default_rng(5)
        )
        medians.append(float(np.median(effective_z(t_low, t_high))))
    assert medians == sorted(medians) and medians[-1] - medians[0] > 15


def test_empty_and_opaque_pixels() -> None:
    t = np.array([[1.0, 0.9999, 1e-6, 0.0]], np.float32)
    z = effective_z(t, t)
    assert z.dtype == np.float32 and z.shape == (1, 4)
    assert z[0, 0] == pytest.approx(Z_EMPTY) and z[0, 1] == pytest.approx(Z_EMPTY)
    assert z[0, 2] == pytest.approx(Z_MAX) and z[0, 3] == pytest.approx(Z_MAX)
    u16 = (t * 65535).astype(np.uint16)
    np.testing.assert_allclose(effective_z(u16, u16), z, atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        effective_z(t, t[:, :2])


def test_pair_from_z_inverts_the_calibration() -> None:
    z = np.array([5.5, 7.5, 13.0, 20.0, 26.0], np.float32)
    x = np.array([0.3, 1.0, 2.0, 3.0, 4.0], np.float32)
    t_low, t_high = pair_from_z(z, x)
    np.testing.assert_allclose(effective_z(t_low, t_high), z, atol=0.2)
    np.testing.assert_allclose(-0.5 * (np.log(t_low) + np.log(t_high)), x, rtol=1e-3)


def _hue_deg(rgb: np.ndarray) -> float:
    r, g, b = (rgb.astype(float) / 255.0).tolist()
    mx, mn = max(r, g, b), min(r, g, b)
    if mx == mn:
        return float("nan")
    if mx == r:
        return (60 * (g - b) / (mx - mn)) % 360
    if mx == g:
        return 60 * (b - r) / (mx - mn) + 120
    return 60 * (r - g) / (mx - mn) + 240


def test_false_colour_palette() -> None:
    r = get_renderer("baggage")
    n = 24  # four bands of 8 rows: air, organic, aluminium, thick steel
    paths = {m: np.zeros((32, n), np.float32) for m in ("air", "cotton", "steel", "aluminium")}
    paths["air"][0:8] = 30.0
    paths["cotton"][8:16] = 20.0  # ~9 g/cm² of organic
    paths["aluminium"][16:24] = 1.0
    paths["steel"][24:32] = 4.0
    rgb = false_color(*r.transmission(paths, np.random.default_rng(0)))
    assert rgb.dtype == np.uint8 and rgb.shape == (32, n, 3)
    air, organic, alu, steel = (
        np.median(rgb[8 * i + 3 : 8 * i + 5].reshape(-1, 3), 0) for i in range(4)
    )
    assert np.all(air >= 245)  # white
    assert 15 <= _hue_deg(organic) <= 45 and organic[0] > organic[2] + 60  # orange
    assert 70 <= _hue_deg(alu) <= 160  # green
    assert steel.max() < 60 and steel[2] >= steel[0]  # thick steel: dark, bluish
    black = false_color(np.full((2, 2), 1e-6, np.float32), np.full((2, 2), 1e-6, np.float32))
    assert black.max() <= 5
    thin_steel = false_color(
        *r.transmission({"steel": np.full((8, 8), 0.3, np.float32)}, None, noise=False)
    )
    assert 190 <= _hue_deg(np.median(thin_steel.reshape(-1, 3), 0)) <= 240  # blue


def test_colour_inverse_roundtrip() -> None:
    z = np.array([[6.0, 13.0, 26.0], [7.5, 15.0, 22.0]], np.float32)
    x = np.array([[0.3, 1.0, 2.5], [0.8, 2.0, 3.5]], np.float32)
    from xscan.synth.colormap import colorize

    rgb = colorize(z, x)
    x_back, z_back = colour_to_physics(rgb)
    np.testing.assert_allclose(x_back, x, rtol=0.15, atol=0.05)
    # Organic hues (Z ≲ 8) are all one orange, so only the class comes back for them.
    organic = z < 8
    assert np.all(z_back[organic] < 9)
    np.testing.assert_allclose(z_back[~organic], z[~organic], atol=1.5)
    assert hue(np.array([5.0]))[0, 0] > hue(np.array([5.0]))[0, 2]  # organic hue: red > blue
