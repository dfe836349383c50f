"""False colour in the standard baggage palette, and its approximate inverse.

Hue comes from the effective atomic number (:func:`xscan.synth.zeff.effective_z`): orange for
organics (Z_eff ≲ 10), green for inorganics and light metals (10–18), blue for metals (above),
with smooth transitions (olive for mixtures around 10, teal around 18). Brightness and
saturation come from the attenuation ``x = (−ln T_low − ln T_high) / 2``: thin objects are pale
tints of their hue over the white background, thicker ones saturated, very thick ones dark, and
black where nothing passes. Nothing is painted per object: every pixel's colour follows from its
two transmissions.

The palette is a table ``color_lut()[z_bin, x_bin] -> RGB``; :func:`colour_to_physics` inverts
it approximately (the palette colour nearest in RGB, on a 64³ grid of colour cells), which threat
image projection into false-colour scans uses.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from xscan.synth.scanner import Scanner
from xscan.synth.zeff import Z_MAX, line_integrals, remap_bilinear, z_from_line_integrals

# Hue anchors (Z_eff, RGB at full saturation), fitted by eye to real dual-energy baggage scans.
HUE_ANCHORS = (
    (1.0, (250, 175, 70)),
    (7.5, (240, 160, 45)),
    (9.0, (220, 175, 50)),
    (10.5, (155, 180, 60)),
    (13.5, (75, 160, 50)),
    (17.0, (50, 150, 120)),
    (20.0, (45, 145, 215)),
    (26.0, (35, 125, 225)),
    (30.0, (30, 105, 205)),
)
X_WHITE = 0.02  # attenuation below which a pixel stays white (suppresses noise tint in air)
X_SATURATE = 0.45  # attenuation above X_WHITE at which the tint is 90 % saturated
X_DARKEN, X_DARK_SCALE = 0.6, 4.0  # beyond X_DARKEN the colour darkens as exp(-(x - X)/scale)
X_BLACK = 9.0  # from here to X_MAX (the 16-bit floor, T = 1/65535) the colour fades to black
X_MAX, N_X, N_Z = 11.1, 256, 120
# px; effective Z is smoothed before colouring, as scanners do. MV dual energy separates
# materials by a few percent in R only, so the linac's Z is much noisier and smoothed more.
Z_SMOOTH_SIGMA = {"baggage": 1.5, "cargo": 3.0}


def hue(z: np.ndarray) -> np.ndarray:
    """Fully saturated RGB ``(..., 3) float32`` in [0, 255] for effective Z values."""
    zs = np.array([a[0] for a in HUE_ANCHORS])
    cols = np.array([a[1] for a in HUE_ANCHORS], np.float64)
    z = np.asarray(z, np.float64)
    return np.stack([np.interp(z, zs, cols[:, c]) for c in range(3)], -1).astype(np.float32)


def shade(rgb_hue: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Tint white towards ``rgb_hue`` and darken by attenuation ``x``; float32 [0, 255]."""
    x = np.asarray(x, np.float32)[..., None]
    s = 1.0 - np.exp(-np.maximum(x - X_WHITE, 0.0) * (2.3 / X_SATURATE))
    v = np.exp(-np.maximum(x - X_DARKEN, 0.0) / X_DARK_SCALE)
    v *= np.clip((X_MAX - x) / (X_MAX - X_BLACK), 0.0, 1.0)
    return (255.0 * (1.0 - s) + rgb_hue * s) * v


@lru_cache(maxsize=1)
def color_lut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lut (N_Z, N_X, 3) uint8, z_grid (N_Z,), x_grid (N_X,))``; x sampled as sqrt."""
    z_grid = np.linspace(1.0, float(Z_MAX), N_Z)
    x_grid = np.linspace(0.0, np.sqrt(X_MAX), N_X) ** 2
    rgb = shade(hue(z_grid)[:, None, :], x_grid[None, :])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), z_grid, x_grid


def false_color(
    t_low: np.ndarray, t_high: np.ndarray, scanner: str | Scanner = "baggage"
) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` false-colour image of a transmission pair ``(H, W)`` in (0, 1]."""
    if np.shape(t_low) != np.shape(t_high):
        raise ValueError(f"t_low {np.shape(t_low)} and t_high {np.shape(t_high)} differ in shape")
    l_low, l_high = line_integrals(t_low, t_high)
    z = z_from_line_integrals(l_low, l_high, scanner)
    sigma = Z_SMOOTH_SIGMA.get(scanner if isinstance(scanner, str) else scanner.name, 1.5)
    if sigma > 0:
        z = cv2.GaussianBlur(z, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    l_low += l_high
    l_low *= np.float32(0.5)
    return colorize(z, l_low)


def colorize(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """RGB ``uint8 (..., 3)`` from effective Z and attenuation ``x`` (bilinear in the table)."""
    zi = np.asarray(z, np.float32) - np.float32(1.0)
    zi *= np.float32((N_Z - 1) / (Z_MAX - 1.0))
    xi = np.sqrt(np.maximum(np.asarray(x, np.float32), np.float32(0.0)))
    xi *= np.float32((N_X - 1) / np.sqrt(X_MAX))
    rgba = remap_bilinear(_rgba_lut(), xi, zi, overwrite=True)
    if rgba.ndim == 3:
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(rgba[..., :3])


@lru_cache(maxsize=1)
def _rgba_lut() -> np.ndarray:
    """The palette padded to 4 channels: OpenCV remaps 4-channel uint8 ~3x faster than 3."""
    return cv2.cvtColor(color_lut()[0], cv2.COLOR_RGB2RGBA)


INV_N = 64  # RGB cells per axis of the inverse table


def invert_shading(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, z)`` float32 of the palette colour nearest to each ``(N, 3)`` RGB row.

    A palette colour is ``α·white + β·hue(Z)`` with ``α = v(1 − s)``, ``β = v·s`` (see
    :func:`shade`), linear in ``(α, β)`` for a given Z; so each candidate Z is a non-negative
    least-squares fit in RGB, the best Z wins, and ``(s, v)`` give back the attenuation ``x``.
    """
    c = np.asarray(rgb, np.float32).reshape(-1, 3)
    z_cand = np.linspace(1.0, float(Z_MAX), 2 * (Z_MAX - 1) + 1)
    hues = hue(z_cand)  # (K, 3) float32
    white = np.full(3, 255.0, np.float32)
    ww, wc = white @ white, c @ white  # scalar, (N,)
    hh, wh = (hues**2).sum(1), hues @ white  # (K,)
    hc = c @ hues.T  # (N, K)
    det = ww * hh - wh**2
    alpha = (hh * wc[:, None] - wh * hc) / det
    beta = (ww * hc - wh * wc[:, None]) / det
    a_only = np.maximum(wc / ww, 0)[:, None] * np.ones_like(beta)
    b_only = np.maximum(hc / hh, 0)
    alpha = np.where(beta < 0, a_only, np.where(alpha < 0, 0.0, alpha))
    beta = np.where(beta < 0, 0.0, np.where(alpha == 0, b_only, beta))
    # |c − α·white − β·hue|² without forming the (N, K, 3) fits.
    resid = alpha * (alpha * ww - 2 * wc[:, None]) + beta * (beta * hh - 2 * hc)
    resid += 2 * alpha * beta * wh
    best = np.argmin(resid, 1)
    idx = np.arange(len(c))
    a, b = alpha[idx, best], beta[idx, best]
    v = np.clip(a + b, 1e-6, 1.0)
    sat = np.clip(b / np.maximum(a + b, 1e-9), 0.0, 0.9999)
    x_sat = np.where(sat > 1e-3, X_WHITE - np.log1p(-sat) * (X_SATURATE / 2.3), 0.0)
    x_dark = X_DARKEN - X_DARK_SCALE * np.log(v)
    # Below X_DARKEN, v = 1 and s < 0.95 carries x; beyond, s ≈ 1 and v carries it.
    x = np.where(sat < 0.93, x_sat, x_dark)
    return np.clip(x, 0.0, X_MAX).astype(np.float32), z_cand[best].astype(np.float32)


_INVERSE = np.full((INV_N**3, 2), np.nan, np.float32)  # filled lazily, cell by cell


def _inverse_cells(cells: np.ndarray) -> np.ndarray:
    """``(x, z)`` of flat RGB cell indices, computing (once) the cells not seen before."""
    todo = np.unique(cells[np.isnan(_INVERSE[cells, 0])])
    if todo.size:
        step = 256.0 / INV_N
        centres = np.stack([todo // INV_N**2, (todo // INV_N) % INV_N, todo % INV_N], 1)
        x, z = invert_shading((centres + 0.5) * step)
        _INVERSE[todo, 0], _INVERSE[todo, 1] = x, z
    return _INVERSE[cells]


def colour_to_physics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate inverse of the palette: ``(x, zeff)`` float32 ``(H, W)`` from ``(H, W, 3)`` RGB.

    ``x`` is the mean attenuation ``(−ln T_low − ln T_high)/2``. Exact only for colours that the
    palette produces; JPEG artefacts and other scanners' palettes map to the nearest entry.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    q = (rgb // (256 // INV_N)).astype(np.int32)
    p = _inverse_cells((q[..., 0] * INV_N + q[..., 1]) * INV_N + q[..., 2])
    return p[..., 0].copy(), p[..., 1].copy()
