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
L_EMPTY = (0.005, 0.04)  # −ln T_high: below the first, Z_EMPTY; blended up to the second
L_OPAQUE = (9.0, 11.0)  # above the second, Z_MAX
L_TABLE_MAX = 12.0
N_L, N_R = 96, 256


@dataclass(frozen=True)
class Calibration:
    """``table[i, j]``: Z at ``sqrt(L_high) = i·ds`` and ``R = r0 + j·dr`` (float32).

    ``r_of_z[k, i]``: R of element Z = k + 1 at the same ``L_high`` grid (used for inversion).
    """

    table: np.ndarray
    ds: float
    r0: float
    dr: float
    r_of_z: np.ndarray


@lru_cache(maxsize=4)
def _calibration_for(kind: str) -> Calibration:
    return calibration(get_scanner(kind))


_BY_OBJECT: dict[int, tuple[Scanner, Calibration]] = {}


def _get(scanner: str | Scanner) -> Calibration:
    if not isinstance(scanner, Scanner):
        return _calibration_for(scanner)
    hit = _BY_OBJECT.get(id(scanner))
    if hit is None or hit[0] is not scanner:  # custom scanners: one calibration per object
        hit = _BY_OBJECT[id(scanner)] = (scanner, calibration(scanner))
    return hit[1]


def calibration(scanner: Scanner) -> Calibration:
    """Build the calibration surface of a scanner from exact polychromatic element slabs.

    The empty/opaque fades are part of the table (they depend on ``L_high`` only), so a lookup
    is a single bilinear interpolation.
    """
    e = scanner.energy_kev
    w = np.stack([scanner.weight_low, scanner.weight_high], 1)
    s_grid = np.linspace(0.0, np.sqrt(L_TABLE_MAX), N_L)
    l_grid = s_grid**2
    zs = np.arange(1, Z_MAX + 1, dtype=np.float64)
    r_table = np.empty((len(zs), N_L))
    areal = np.geomspace(1e-5, 1e5, 1200)[:, None]
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
    # Fade to the empty / opaque values where R carries no information.
    a = np.clip((l_grid - L_EMPTY[0]) / (L_EMPTY[1] - L_EMPTY[0]), 0, 1)[:, None]
    b = np.clip((l_grid - L_OPAQUE[0]) / (L_OPAQUE[1] - L_OPAQUE[0]), 0, 1)[:, None]
    table = Z_EMPTY + (table - Z_EMPTY) * a
    table = (table + (Z_MAX - table) * b).astype(np.float32)
    return Calibration(
        table, float(s_grid[1]), r0, float(r_grid[1] - r_grid[0]), r_table.astype(np.float32)
    )


def effective_z(
    t_low: np.ndarray, t_high: np.ndarray, scanner: str | Scanner = "baggage"
) -> np.ndarray:
    """Effective atomic number ``(H, W) float32`` in ``[Z_EMPTY, Z_MAX]``.

    ``t_low``/``t_high``: transmissions in (0, 1] (any float dtype; uint16 is read as T×65535).
    """
    if np.shape(t_low) != np.shape(t_high):
        raise ValueError(f"t_low {np.shape(t_low)} and t_high {np.shape(t_high)} differ in shape")
    return z_from_line_integrals(*line_integrals(t_low, t_high), scanner)


def line_integrals(t_low: np.ndarray, t_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(−ln T_low, −ln T_high)`` float32, transmissions clipped to ``[1e-6, 1]``."""
    return -np.log(_as_transmission(t_low)), -np.log(_as_transmission(t_high))


def z_from_line_integrals(
    l_low: np.ndarray, l_high: np.ndarray, scanner: str | Scanner = "baggage"
) -> np.ndarray:
    """Effective Z ``float32`` from ``−ln T`` of both channels (see :func:`effective_z`)."""
    cal = _get(scanner)
    r = l_low / np.maximum(l_high, np.float32(1e-6))
    r -= np.float32(cal.r0)
    r *= np.float32(1.0 / cal.dr)
    u = np.sqrt(l_high)
    u *= np.float32(1.0 / cal.ds)
    return remap_bilinear(cal.table, r, u, overwrite=True)


def _as_transmission(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if t.dtype == np.uint16:
        t = t.astype(np.float32) * np.float32(1.0 / 65535.0)
    return np.clip(t.astype(np.float32, copy=False), 1e-6, 1.0)


def remap_bilinear(
    table: np.ndarray, col: np.ndarray, row: np.ndarray, overwrite: bool = False
) -> np.ndarray:
    """Bilinear lookup of a 2D table (optionally with channels) at fractional ``(row, col)``.

    ``col``/``row``: float32 arrays of any one shape; outside the table the edge values hold.
    Returns ``col.shape + table.shape[2:]`` in the table's dtype (``cv2.remap``: fixed-point
    weights in steps of 1/32 of a cell). Coordinates are clamped to the table first (OpenCV's
    border path is ~2x slower); ``overwrite=True`` lets that happen in the given float32 arrays.
    """
    shape = np.shape(col)
    as_array = np.asarray if overwrite else np.array
    col = as_array(col, np.float32)
    row = as_array(row, np.float32)
    np.clip(col, 0, table.shape[1] - 1, out=col)
    np.clip(row, 0, table.shape[0] - 1, out=row)
    flat = col.ndim != 2 or col.shape[1] > _MAX_SIDE
    if flat:  # cv2 maps must be 2D and under 32767 px a side
        n = col.size
        pad = (-n) % 1024
        col = np.pad(col.ravel(), (0, pad)).reshape(-1, 1024)
        row = np.pad(row.ravel(), (0, pad)).reshape(-1, 1024)
    out = np.empty(col.shape + table.shape[2:], table.dtype)
    for r0 in range(0, col.shape[0], _MAX_SIDE):
        sl = slice(r0, r0 + _MAX_SIDE)
        cv2.remap(
            table, col[sl], row[sl], cv2.INTER_LINEAR, dst=out[sl], borderMode=cv2.BORDER_REPLICATE
        )
    if flat:
        out = out.reshape((-1,) + table.shape[2:])[: int(np.prod(shape))]
    return out.reshape(shape + table.shape[2:])


_MAX_SIDE = 16384


def pair_from_z(
    z: np.ndarray, x: np.ndarray, scanner: str | Scanner = "baggage"
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the calibration: ``(t_low, t_high)`` float32 of a slab of effective Z ``z``
    whose mean attenuation ``(−ln T_low − ln T_high)/2`` is ``x`` (arrays of one shape).

    Uses the element curves ``R(Z, L_high)``, interpolated linearly between integer Z.
    """
    cal = _get(scanner)
    z = np.clip(np.asarray(z, np.float32), 1.0, float(Z_MAX))
    x = np.maximum(np.asarray(x, np.float32), 0.0)
    l_grid = (cal.ds * np.arange(cal.r_of_z.shape[1])) ** 2
    k = np.minimum(np.floor(z - 1.0).astype(np.int32), Z_MAX - 2)
    f = z - 1.0 - k
    l_high = np.zeros(x.shape, np.float64)
    ratio = np.ones(x.shape, np.float64)
    for kk in np.unique(k):
        sel = k == kk
        lh = r = 0.0
        for row, wgt in ((kk, 1.0 - f[sel]), (kk + 1, f[sel])):
            r_row = cal.r_of_z[row].astype(np.float64)
            x_row = l_grid * (1.0 + r_row) / 2.0  # mean attenuation along the L_high grid
            lh_row = np.interp(x[sel], x_row, l_grid)
            beyond = x[sel] > x_row[-1]
            lh_row[beyond] = x[sel][beyond] * 2.0 / (1.0 + r_row[-1])
            lh = lh + wgt * lh_row
            r = r + wgt * np.interp(lh_row, l_grid, r_row)
        l_high[sel], ratio[sel] = lh, r
    return np.exp(-l_high * ratio).astype(np.float32), np.exp(-l_high).astype(np.float32)
