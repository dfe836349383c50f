"""Reference mode: compare a cargo scan with earlier cleared scans of the same vehicle.

Customs systems compare a truck with its own earlier cleared crossings (CBP's AAXI). Here:

1. Both scans are turned into attenuation images ``A = -ln T`` (transmission ``T`` from the
   raw high-energy channel, or the luminance of a false-colour image, in [0, 1]). In
   attenuation, material adds up: an object hidden in the load adds its own ``-ln T`` on top of
   what the vehicle had, independent of what lies behind it.
2. The reference is aligned to the scan: a global shift by phase correlation (OpenCV's
   ``phaseCorrelate``, Hann-windowed) as the start, refined by ECC (``findTransformECC``,
   affine, on a reduced image) to absorb the speed and position differences of a drive-through.
3. Feature difference: at each of a few Gaussian scales the scan's attenuation minus the
   *local maximum* of the aligned reference (a grey-scale dilation by ``tolerance_px``), so
   residual misalignment of edges does not light up; only added material is positive. Scales
   are combined by their maximum; several references by the per-pixel *minimum* (whatever
   one cleared crossing already had is explained).

The map is in attenuation units (``-ln T``; 0.1 is about 10 % less transmission), the scan
score is a high quantile of the map (robust against single noisy pixels).

Numpy + OpenCV only: torch-free, usable on the runtime side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from xscan.preprocess import to_unit_float


@dataclass
class ReferenceSettings:
    scales: Sequence[float] = (1.0, 3.0, 6.0)  # Gaussian sigmas in pixels of the work image
    tolerance_px: int = 3  # misalignment absorbed by the reference dilation
    max_side: int = 1024  # the work resolution: long side reduced to at most this
    ecc_iterations: int = 60
    score_quantile: float = 0.9995


@dataclass
class ReferenceResult:
    """``amap (H, W) float32`` in attenuation units at scan resolution, ``score``, and the
    ``2x3`` affine warps (work resolution) that aligned each reference to the scan."""

    amap: np.ndarray
    score: float
    warps: list[np.ndarray] = field(default_factory=list)
    ecc: list[float] = field(default_factory=list)


def attenuation(image: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` attenuation ``-ln T`` of a decoded scan.

    ``(H, W, 2|3) float32`` raw pairs use the high-energy channel (index 1); 8/16-bit RGB
    false-colour images use their luminance; grayscale images are transmission directly.
    """
    img = np.asarray(image)
    if img.dtype == np.float32 and img.ndim == 3 and img.shape[2] in (2, 3):
        t = img[:, :, 1]
    else:
        t = to_unit_float(img)
        if t.ndim == 3:
            t = cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)
    return -np.log(np.clip(t, 1e-3, 1.0)).astype(np.float32)


def _work_scale(h: int, w: int, max_side: int) -> float:
    return min(1.0, max_side / max(h, w))


def align(moving: np.ndarray, fixed: np.ndarray, iterations: int = 60) -> tuple[np.ndarray, float]:
    """Affine warp ``(2, 3) float32`` mapping ``fixed`` pixel coordinates into ``moving``
    (for ``cv2.warpAffine(..., flags=WARP_INVERSE_MAP)``) and the ECC correlation (or -1 when
    ECC did not converge and the phase-correlation shift is used alone)."""
    h, w = fixed.shape
    a = (
        cv2.resize(moving, (w, h), interpolation=cv2.INTER_AREA)
        if moving.shape != fixed.shape
        else moving
    )
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(fixed.astype(np.float32), a.astype(np.float32), win)
    sx, sy = moving.shape[1] / w, moving.shape[0] / h
    warp = np.array([[sx, 0, dx * sx], [0, sy, dy * sy]], np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
    try:
        cc, warp_ecc = cv2.findTransformECC(
            cv2.GaussianBlur(fixed, (0, 0), 1.5),
            cv2.GaussianBlur(moving, (0, 0), 1.5),
            warp.copy(),
            cv2.MOTION_AFFINE,
            crit,
            None,
            5,
        )
        return warp_ecc.astype(np.float32), float(cc)
    except cv2.error:
        return warp, -1.0


def _difference(scan_a: np.ndarray, ref_a: np.ndarray, s: ReferenceSettings) -> np.ndarray:
    k = 2 * s.tolerance_px + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = None
    for sigma in s.scales:
        a = cv2.GaussianBlur(scan_a, (0, 0), sigma)
        r = cv2.dilate(cv2.GaussianBlur(ref_a, (0, 0), sigma), kernel)
        d = np.maximum(a - r, 0.0)
        out = d if out is None else np.maximum(out, d)
    return out


def reference_map(
    scan: np.ndarray, references: Sequence[np.ndarray], settings: ReferenceSettings | None = None
) -> ReferenceResult:
    """Compare ``scan`` with earlier cleared ``references`` of the same vehicle (decoded
    images, any size); see the module docstring."""
    if not references:
        raise ValueError("reference mode: no reference scans for this vehicle")
    s = settings or ReferenceSettings()
    a = attenuation(scan)
    h, w = a.shape
    f = _work_scale(h, w, s.max_side)
    wh, ww = max(8, int(round(h * f))), max(8, int(round(w * f)))
    a_small = cv2.resize(a, (ww, wh), interpolation=cv2.INTER_AREA)
    best, warps, eccs = None, [], []
    for ref in references:
        r = attenuation(ref)
        rf = _work_scale(*r.shape, s.max_side)
        r_small = cv2.resize(
            r,
            (max(8, int(round(r.shape[1] * rf))), max(8, int(round(r.shape[0] * rf)))),
            interpolation=cv2.INTER_AREA,
        )
        warp, cc = align(r_small, a_small, s.ecc_iterations)
        aligned = cv2.warpAffine(
            r_small,
            warp,
            (ww, wh),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        d = _difference(a_small, aligned, s)
        best = d if best is None else np.minimum(best, d)
        warps.append(warp)
        eccs.append(cc)
    amap = cv2.resize(best, (w, h), interpolation=cv2.INTER_LINEAR)
    score = float(np.quantile(best, s.score_quantile))
    return ReferenceResult(amap.astype(np.float32), score, warps, eccs)
