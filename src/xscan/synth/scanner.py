"""Scanner models: polychromatic source, dual-energy detector, blur, noise and gain.

* ``baggage``: 160 kVp tungsten tube (2 mm Al filter) and a sandwich detector — 0.5 mm Al
  cover, front 0.3 mm CsI (low-energy signal), 0.6 mm Cu filter, rear 4 mm CsI (high-energy).
* ``cargo``: interleaved 6 MV / 9 MV linac pulses on a 30 mm CdWO4 detector.

Both channels are energy integrating. Image convention: detector elements along x (columns),
scan motion along y (rows), so fixed-pattern gain differs per column and a linac's pulse-to-pulse
dose varies per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xscan.synth.materials import get_material
from xscan.synth.spectra import (
    CDWO4,
    CSI,
    Layer,
    effective_quanta,
    layer_signal,
    resample,
    source_spectrum,
)


@dataclass(frozen=True)
class Scanner:
    """A dual-energy scanner, reduced to what the renderer needs.

    ``energy_kev`` ``(E,)`` is the common energy grid; ``weight_low``/``weight_high`` ``(E,)`` are
    each channel's detected signal per bin in air (photons × deposited energy), normalised to
    sum to 1, so a slab transmits ``T = Σ_E w(E) exp(−μ(E) ρ t)``.
    ``quanta_low``/``quanta_high`` are the noise-equivalent photon counts per pixel in air, from
    ``photons_per_pixel`` incident photons and the channel's Swank factor
    (:func:`~xscan.synth.spectra.effective_quanta`). Vary detector settings with
    ``dataclasses.replace`` (e.g. ``replace(get_scanner("baggage"), focal_blur_sigma_px=1.2)``).
    """

    name: str
    energy_kev: np.ndarray = field(repr=False)
    weight_low: np.ndarray = field(repr=False)
    weight_high: np.ndarray = field(repr=False)
    quanta_low: float
    quanta_high: float
    photons_per_pixel: float = 0.0
    focal_blur_sigma_px: float = 0.7
    gain_sigma: float = 0.004
    pulse_sigma: float = 0.0
    dark_noise: float = 2e-4
    gain_seed: int = 20240601
    description: str = ""

    def column_gain(self, width: int) -> np.ndarray:
        """Residual per-column gain ``(W,) float32`` after flat-field calibration (seeded)."""
        rng = np.random.default_rng([self.gain_seed, width])
        return (1.0 + self.gain_sigma * rng.standard_normal(width)).astype(np.float32)


def _channels(
    grid: np.ndarray, spectra: tuple[np.ndarray, np.ndarray], responses: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, float, float]:
    weights, quanta = [], []
    for photons, resp in zip(spectra, responses, strict=True):
        w = photons * resp
        weights.append(w / w.sum())
        quanta.append(effective_quanta(photons, resp))
    return weights[0], weights[1], quanta[0], quanta[1]


def baggage_scanner(kvp: int = 160, photons_per_pixel: float = 2.0e4) -> Scanner:
    """Tube + sandwich detector; ``photons_per_pixel`` reach each pixel in air per scan line."""
    e, n = source_spectrum(f"tube_{kvp}kv")
    keep = n > n.max() * 1e-6
    e, n = e[keep], n[keep]
    cover = Layer(get_material("aluminium"), 0.05)
    front = Layer(CSI, 0.03)
    copper = Layer(get_material("copper"), 0.06)
    rear = Layer(CSI, 0.4)
    r_low = layer_signal(e, (cover,), front)
    r_high = layer_signal(e, (cover, front, copper), rear)
    w_lo, w_hi, q_lo, q_hi = _channels(e, (n, n), (r_low, r_high))
    return Scanner(
        name="baggage",
        energy_kev=e,
        weight_low=w_lo,
        weight_high=w_hi,
        quanta_low=q_lo * photons_per_pixel,
        quanta_high=q_hi * photons_per_pixel,
        photons_per_pixel=photons_per_pixel,
        focal_blur_sigma_px=0.7,
        gain_sigma=0.004,
        description=f"{kvp} kVp W tube, CsI 0.3 mm / Cu 0.6 mm / CsI 4 mm sandwich detector",
    )


def cargo_scanner(mv_low: int = 6, mv_high: int = 9, photons_per_pixel: float = 2.0e5) -> Scanner:
    """Interleaved dual-energy linac pulses on one thick CdWO4 detector row."""
    e_hi, n_hi = source_spectrum(f"linac_{mv_high}mv")
    e_lo, n_lo = source_spectrum(f"linac_{mv_low}mv")
    grid = e_hi
    n_lo = resample(e_lo, n_lo, grid)
    housing = Layer(get_material("aluminium"), 0.2)
    sensor = Layer(CDWO4, 3.0)
    r = layer_signal(grid, (housing,), sensor)
    w_lo, w_hi, q_lo, q_hi = _channels(grid, (n_lo, n_hi), (r, r))
    return Scanner(
        name="cargo",
        energy_kev=grid,
        weight_low=w_lo,
        weight_high=w_hi,
        quanta_low=q_lo * photons_per_pixel,
        quanta_high=q_hi * photons_per_pixel,
        photons_per_pixel=photons_per_pixel,
        focal_blur_sigma_px=1.0,
        gain_sigma=0.003,
        pulse_sigma=0.004,
        description=f"{mv_low}/{mv_high} MV interleaved linac, 30 mm CdWO4 detector",
    )


_FACTORIES = {"baggage": baggage_scanner, "cargo": cargo_scanner}
_CACHE: dict[str, Scanner] = {}


def get_scanner(kind: str) -> Scanner:
    """The default ``baggage`` or ``cargo`` scanner (built once per process)."""
    if kind not in _FACTORIES:
        raise ValueError(f"unknown scanner kind {kind!r}; expected one of {sorted(_FACTORIES)}")
    if kind not in _CACHE:
        _CACHE[kind] = _FACTORIES[kind]()
    return _CACHE[kind]
