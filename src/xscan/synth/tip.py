"""Threat image projection (TIP): insert a rendered object into an existing scan.

Objects are transmission patches ``obj_low``/``obj_high`` ``(h, w) float32`` that are 1.0 outside
the object (render the object's path lengths alone with
:meth:`xscan.synth.render.Renderer.transmission`). ``(x, y)`` is the patch's top-left corner in
the scan's pixels (column, row); parts outside the scan are cut off.

* Raw dual-energy scans: exact. Attenuation along a ray adds, so transmissions multiply —
  ``T = T_scan · T_object`` per channel (Beer–Lambert; exact for the noise-free monochromatic
  case and, with energy-integrating channels, exact up to the beam hardening of the object by the
  bag, which a product of two separately measured transmissions ignores).
* False-colour scans (e.g. real SIXray images): approximate. The scan's colours are mapped back
  through the inverse palette (:func:`xscan.synth.colormap.colour_to_physics`) to attenuation
  ``x`` and effective Z, from which a transmission pair is reconstructed with the calibration
  (``R(Z, L)``); the object is multiplied in and the pixels under it re-coloured with our palette.
  What is lost: the scan was coloured by another scanner's palette and JPEG-compressed, so the
  recovered ``(x, Z)`` are the nearest entries of *our* palette (hue and brightness quantised,
  the other vendor's curves unknown); black (saturated) pixels carry no information, so an object
  behind them stays invisible, as it would in reality; and the object's own noise is added on top
  of the scan's. Pixels outside the object's footprint are returned untouched.
"""

from __future__ import annotations

import numpy as np

from xscan.synth.colormap import colorize, colour_to_physics
from xscan.synth.scanner import Scanner
from xscan.synth.zeff import effective_z, pair_from_z

OBJECT_EPS = 1e-3  # an object pixel transmits less than 1 − OBJECT_EPS in either channel


def _window(shape: tuple[int, ...], patch: tuple[int, ...], x: int, y: int):
    """Slices of the scan and of the patch for a patch placed at (x, y), clipped."""
    h, w = shape[:2]
    ph, pw = patch[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pw, w), min(y + ph, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"object of size {pw}x{ph} at ({x}, {y}) lies outside the {w}x{h} scan")
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def object_mask(obj_low: np.ndarray, obj_high: np.ndarray, eps: float = OBJECT_EPS) -> np.ndarray:
    """``(h, w) bool``: where the object attenuates (either channel below ``1 − eps``)."""
    return (np.asarray(obj_low) < 1.0 - eps) | (np.asarray(obj_high) < 1.0 - eps)


def project_raw(
    t_low: np.ndarray, t_high: np.ndarray, obj_low: np.ndarray, obj_high: np.ndarray, x: int, y: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scan with the object inserted: new ``(t_low, t_high)`` float32 ``(H, W)`` (inputs kept)."""
    if obj_low.shape != obj_high.shape:
        raise ValueError(f"object channels differ in shape: {obj_low.shape} vs {obj_high.shape}")
    scan_sl, obj_sl = _window(np.shape(t_low), obj_low.shape, int(x), int(y))
    out_low = np.array(t_low, np.float32, copy=True)
    out_high = np.array(t_high, np.float32, copy=True)
    out_low[scan_sl] *= np.asarray(obj_low, np.float32)[obj_sl]
    out_high[scan_sl] *= np.asarray(obj_high, np.float32)[obj_sl]
    return out_low, out_high


def project_false_color(
    rgb: np.ndarray,
    obj_low: np.ndarray,
    obj_high: np.ndarray,
    x: int,
    y: int,
    scanner: str | Scanner = "baggage",
) -> np.ndarray:
    """False-colour scan ``(H, W, 3) uint8`` with the object inserted (approximate; see module)."""
    rgb = np.asarray(rgb)
    scan_sl, obj_sl = _window(rgb.shape, obj_low.shape, int(x), int(y))
    patch = rgb[scan_sl]
    x_bg, z_bg = colour_to_physics(np.ascontiguousarray(patch))
    bg_low, bg_high = pair_from_z(z_bg, x_bg, scanner)
    o_low = np.asarray(obj_low, np.float32)[obj_sl]
    o_high = np.asarray(obj_high, np.float32)[obj_sl]
    t_low, t_high = bg_low * o_low, bg_high * o_high
    z = effective_z(t_low, t_high, scanner)
    x_new = -0.5 * (np.log(t_low) + np.log(t_high))
    inside = object_mask(o_low, o_high)
    out = rgb.copy()
    region = out[scan_sl]
    region[inside] = colorize(z[inside], x_new[inside])
    return out
