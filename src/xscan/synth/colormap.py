"""False colour in the standard baggage palette, and its approximate inverse.

Hue comes from the effective atomic number (:func:`xscan.synth.zeff.effective_z`): orange for
organics (Z_eff ≲ 10), green for inorganics and light metals (10–18), blue for metals (above),
with smooth transitions (olive for mixtures around 10, teal around 18). Brightness and
saturation come from the attenuation ``x = (−ln T_low − ln T_high) / 2``: thin objects are pale
tints of their hue over the white background, thicker ones saturated, very thick ones dark, and
black where nothing passes. Nothing is painted per object: every pixel's colour follows from its
two transmissions.

The palette is a table ``COLOR_LUT[z_bin, x_bin] -> RGB``; :func:`colour_to_physics` inverts it
approximately (nearest table entry in RGB), which threat image projection into false-colour
scans uses.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from xscan.synth.scanner import Scanner
from xscan.synth.zeff import Z_MAX, effective_z

# Hue anchors (Z_eff, RGB at full saturation), fitted by eye to real dual-energy baggage scans.
HUE_ANCHORS = (
    (1.0, (250, 150, 60)),
    (7.5, (240, 135, 35)),
    (9.5, (215, 160, 45)),
    (11.0, (165, 185, 70)),
    (14.0, (85, 170, 70)),
    (17.0, (50, 150, 110)),
    (20.0, (35, 115, 170)),
    (26.0, (25, 85, 185)),
    (30.0, (20, 60, 160)),
)
X_SATURATE = 0.45  # attenuation at which the tint is ~90 % saturated (1 − e^-x/xs, xs = x/2.3)
X_DARKEN, X_DARK_SCALE = 1.2, 1.9  # beyond X_DARKEN the colour darkens as exp(-(x - X)/scale)
X_MAX, N_X, N_Z = 12.0, 256, 120
Z_SMOOTH_SIGMA = 1.0  # px; effective Z is smoothed before colouring (as scanners do)


def hue(z: np.ndarray) -> np.ndarray:
    """Fully saturated RGB ``(..., 3) float32`` in [0, 255] for effective Z values."""
    zs = np.array([a[0] for a in HUE_ANCHORS])
    cols = np.array([a[1] for a in HUE_ANCHORS], np.float64)
    z = np.asarray(z, np.float64)
    return np.stack([np.interp(z, zs, cols[:, c]) for c in range(3)], -1).astype(np.float32)


def shade(rgb_hue: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Tint white towards ``rgb_hue`` and darken by attenuation ``x``; float32 [0, 255]."""
    x = np.asarray(x, np.float32)[..., None]
    s = 1.0 - np.exp(-x * (2.3 / X_SATURATE))
    v = np.exp(-np.maximum(x - X_DARKEN, 0.0) / X_DARK_SCALE)
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
    z = effective_z(t_low, t_high, scanner)
    if Z_SMOOTH_SIGMA > 0:
        z = cv2.GaussianBlur(z, (0, 0), Z_SMOOTH_SIGMA, borderType=cv2.BORDER_REPLICATE)
    tl = np.clip(np.asarray(t_low, np.float32), 1e-6, 1.0)
    th = np.clip(np.asarray(t_high, np.float32), 1e-6, 1.0)
    x = -0.5 * (np.log(tl) + np.log(th))
    return colorize(z, x)


def colorize(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """RGB ``uint8 (..., 3)`` from effective Z and attenuation ``x`` (nearest table entry)."""
    lut, z_grid, _ = color_lut()
    zi = np.rint((np.asarray(z, np.float32) - 1.0) * ((N_Z - 1) / (Z_MAX - 1.0)))
    xi = np.rint(np.sqrt(np.clip(x, 0.0, X_MAX)) * ((N_X - 1) / np.sqrt(X_MAX)))
    zi = np.clip(zi, 0, N_Z - 1).astype(np.int32)
    xi = np.clip(xi, 0, N_X - 1).astype(np.int32)
    return lut.reshape(-1, 3)[zi * N_X + xi]


@lru_cache(maxsize=1)
def _inverse_table() -> np.ndarray:
    """For each RGB cell of a 32³ grid: ``(z, x)`` of the nearest palette entry."""
    lut, z_grid, x_grid = color_lut()
    sub = lut[::2, ::2].reshape(-1, 3).astype(np.float32)
    zz, xx = np.meshgrid(z_grid[::2], x_grid[::2], indexing="ij")
    params = np.stack([zz.ravel(), xx.ravel()], 1).astype(np.float32)
    centres = (np.arange(32, dtype=np.float32) + 0.5) * 8.0
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    out = np.empty((grid.shape[0], 2), np.float32)
    sub_sq = (sub**2).sum(1)
    for s in range(0, grid.shape[0], 4096):
        g = grid[s : s + 4096]
        d = sub_sq[None, :] - 2.0 * g @ sub.T
        out[s : s + 4096] = params[np.argmin(d, 1)]
    return out.reshape(32, 32, 32, 2)


def colour_to_physics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate inverse of the palette: ``(x, zeff)`` float32 ``(H, W)`` from ``(H, W, 3)`` RGB.

    ``x`` is the mean attenuation ``(−ln T_low − ln T_high)/2``. Exact only for colours that the
    palette produces; JPEG artefacts and other scanners' palettes map to the nearest entry.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    inv = _inverse_table()
    q = (rgb >> 3).astype(np.int32)
    p = inv[q[..., 0], q[..., 1], q[..., 2]]
    return p[..., 1].copy(), p[..., 0].copy()
