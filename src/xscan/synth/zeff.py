"""Effective atomic number from a dual-energy transmission pair, through calibration curves.

For a slab of one material, ``R = ln T_low / ln T_high`` depends on its atomic number *and*,
through beam hardening, on its thickness. So the calibration is a surface: pure elements
Z = 1..``Z_MAX`` are "rendered" as slabs over a sweep of areal densities with the scanner's exact
polychromatic response; for each ``L = −ln T_high`` this gives ``R(Z)``, monotone in Z below
the K-edge region, which is inverted to a table ``Z(L, R)`` on a regular grid
(``sqrt(L)`` × ``R``). At run time a pixel costs a bilinear lookup (``cv2.remap``).

Edge cases: where almost nothing attenuates (``L < L_EMPTY``) R is pure noise and the result
fades to ``Z_EMPTY``; where almost nothing passes (``L > L_OPAQUE``) it fades to ``Z_MAX``.
For a linac (cargo) R *decreases* with Z (pair production); the table handles either direction.

Numpy + OpenCV only (``xscan.preprocess`` uses it for raw dual-energy model inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from xscan.synth.attenuation import element_mass_attenuation
from xscan.synth.scanner import Scanner, get_scanner

Z_EMPTY = 1.0
Z_MAX = 30
L_EMPTY = (0.01, 0.04)  # −ln T_high: below the first, Z_EMPTY; blended up to the second
L_OPAQUE = (9.0, 11.0)  # above the second, Z_MAX
L_TABLE_MAX = 12.0
N_L, N_R = 96, 256


@dataclass(frozen=True)
class Calibration:
    """``table[i, j]``: Z at ``sqrt(L_high) = s0 + i·ds`` and ``R = r0 + j·dr`` (float32).

    ``r_of_z[k, i]``: R of element Z = k + 1 at the same ``L_high`` grid (used for inversion).
    """

    table: np.ndarray
    s0: float
    ds: float
    r0: float
    dr: float
    r_of_z: np.ndarray


@lru_cache(maxsize=4)
def _calibration_for(kind: str) -> Calibration:
    return calibration(get_scanner(kind))


def _get(scanner: str | Scanner) -> Calibration:
    return calibration(scanner) if isinstance(scanner, Scanner) else _calibration_for(scanner)


def calibration(scanner: Scanner) -> Calibration:
    """Build the calibration surface of a scanner from exact polychromatic element slabs."""
    e = scanner.energy_kev
    w = np.stack([scanner.weight_low, scanner.weight_high], 1)
    s_grid = np.linspace(np.sqrt(L_EMPTY[0]), np.sqrt(L_TABLE_MAX), N_L)
    l_grid = s_grid**2
    zs = np.arange(1, Z_MAX + 1, dtype=np.float64)
    r_table = np.empty((len(zs), N_L))
    areal = np.geomspace(1e-4, 1e5, 1200)[:, None]
    for i, z in enumerate(zs):
        mu = element_mass_attenuation(int(z), e)
        t = np.exp(-np.minimum(areal * mu, 700.0)) @ w
        neg = -np.log(np.maximum(t, 1e-300))
        ok = neg[:, 1] < 50
        r_table[i] = np.interp(l_grid, neg[ok, 1], neg[ok, 0] / neg[ok, 1])
    increasing = np.median(np.diff(r_table, axis=0)) > 0
    r0, r1 = float(r_table.min()), float(r_table.max())
    r_grid = np.linspace(r0, r1, N_R)
    table = np.empty((N_L, N_R), np.float32)
    for j in range(N_L):
        col = r_table[:, j] if increasing else -r_table[:, j]
        col = np.maximum.accumulate(col)  # enforce monotone R(Z) (flat where it is not)
        x = r_grid if increasing else -r_grid
        table[j] = np.interp(x, col + np.arange(len(col)) * 1e-9, zs)
    return Calibration(
        table,
        float(s_grid[0]),
        float(s_grid[1] - s_grid[0]),
        r0,
        float(r_grid[1] - r_grid[0]),
        r_table.astype(np.float32),
    )


def effective_z(
    t_low: np.ndarray, t_high: np.ndarray, scanner: str | Scanner = "baggage"
) -> np.ndarray:
    """Effective atomic number ``(H, W) float32`` in ``[Z_EMPTY, Z_MAX]``.

    ``t_low``/``t_high``: transmissions in (0, 1] (any float dtype; uint16 is read as T×65535).
    """
    tl = _as_transmission(t_low)
    th = _as_transmission(t_high)
    if tl.shape != th.shape:
        raise ValueError(f"t_low {tl.shape} and t_high {th.shape} differ in shape")
    cal = _get(scanner)
    l_high = -np.log(th)
    l_low = -np.log(tl)
    r = l_low / np.maximum(l_high, 1e-6)
    u = (np.sqrt(l_high) - np.float32(cal.s0)) * np.float32(1.0 / cal.ds)
    v = (r - np.float32(cal.r0)) * np.float32(1.0 / cal.dr)
    z = _remap(cal.table, v, u)
    # Fade to the empty / opaque values where R carries no information.
    a = np.clip((l_high - L_EMPTY[0]) / (L_EMPTY[1] - L_EMPTY[0]), 0, 1)
    b = np.clip((l_high - L_OPAQUE[0]) / (L_OPAQUE[1] - L_OPAQUE[0]), 0, 1)
    z = Z_EMPTY + (z - Z_EMPTY) * a
    z = z + (Z_MAX - z) * b
    return z.astype(np.float32)


def _as_transmission(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if t.dtype == np.uint16:
        t = t.astype(np.float32) * np.float32(1.0 / 65535.0)
    return np.clip(t.astype(np.float32, copy=False), 1e-6, 1.0)


def _remap(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``table`` at column ``x``, row ``y`` (clamped), float32."""
    x = np.clip(x, 0, table.shape[1] - 1).astype(np.float32, copy=False)
    y = np.clip(y, 0, table.shape[0] - 1).astype(np.float32, copy=False)
    out = np.empty(x.shape, np.float32)
    rows = 16384  # cv2 maps are limited to 32767 px a side
    for r0 in range(0, x.shape[0], rows):
        sl = slice(r0, r0 + rows)
        cv2.remap(
            table, x[sl], y[sl], cv2.INTER_LINEAR, dst=out[sl], borderMode=cv2.BORDER_REPLICATE
        )
    return out


def pair_from_z(
    z: np.ndarray, x: np.ndarray, scanner: str | Scanner = "baggage"
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the calibration: ``(t_low, t_high)`` float32 of a slab of effective Z ``z``
    whose mean attenuation ``(−ln T_low − ln T_high)/2`` is ``x`` (arrays of one shape)."""
    cal = _get(scanner)
    z = np.clip(np.asarray(z, np.float32), 1.0, float(Z_MAX))
    x = np.maximum(np.asarray(x, np.float32), 0.0)
    l_grid = (cal.s0 + cal.ds * np.arange(cal.r_of_z.shape[1])) ** 2
    k = np.minimum(np.floor(z - 1.0).astype(np.int32), Z_MAX - 2)
    f = z - 1.0 - k
    out_high = np.zeros_like(x)
    out_r = np.ones_like(x)
    for kk in np.unique(k):
        sel = k == kk
        lh = r = 0.0
        for row, wgt in ((kk, 1.0 - f[sel]), (kk + 1, f[sel])):
            r_row = cal.r_of_z[row]
            x_row = l_grid * (1.0 + r_row) / 2.0
            lh_row = np.interp(x[sel], x_row, l_grid, left=np.nan)
            lh_row = np.where(np.isnan(lh_row), x[sel] / ((1.0 + r_row[0]) / 2.0), lh_row)
            lh = lh + wgt * lh_row
            r = r + wgt * np.interp(lh_row, l_grid, r_row)
        out_high[sel], out_r[sel] = lh, r
    t_high = np.exp(-out_high).astype(np.float32)
    t_low = np.exp(-out_high * out_r).astype(np.float32)
    return t_low, t_high
