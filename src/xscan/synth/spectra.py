"""X-ray sources and detector energy response.

Source spectra are shipped in ``data/spectra.npz`` (built by
``scripts/build_attenuation_table.py``): photons per energy bin at the object, normalised to sum
to 1, for tungsten tubes (Kramers' law + W K lines, anode self-absorption, 1 mm Be window,
2 mm Al filter; 140 and 160 kVp, 1 keV bins) and linacs (thick-target bremsstrahlung through
1.5 mm W target and 10 mm steel; 4, 6 and 9 MV, 50 keV bins).

Detectors are energy integrating: a layer's signal per incident photon of energy E is
``E · (1 − exp(−μ(E) ρ t))`` (interaction probability times photon energy; secondary escape is
neglected), times the transmission of everything in front of the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from xscan.synth.attenuation import mass_attenuation
from xscan.synth.materials import Material

# Detector and filter materials (not scene materials, so kept out of MATERIALS).
CSI = Material.from_formula("csi", "CsI", 4.51, "metal", "CsI(Tl) scintillator")
GOS = Material.from_formula("gos", "Gd2O2S", 7.32, "metal", "Gd2O2S(Tb) scintillator")
CDWO4 = Material.from_formula("cdwo4", "CdWO4", 7.9, "metal", "CdWO4 scintillator")
DETECTOR_MATERIALS = {m.name: m for m in (CSI, GOS, CDWO4)}


@lru_cache(maxsize=1)
def _spectra() -> dict[str, np.ndarray]:
    with resources.files("xscan.synth").joinpath("data/spectra.npz").open("rb") as fh:
        with np.load(fh) as z:
            return {k: z[k].astype(np.float64) for k in z.files}


def available_sources() -> list[str]:
    """Names accepted by :func:`source_spectrum`: ``tube_140kv``, ``linac_6mv``, …"""
    return sorted(k[: -len("_photons")] for k in _spectra() if k.endswith("_photons"))


def source_spectrum(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(energy_kev, photons)`` float64 ``(E,)``: bin centres and photon fraction per bin."""
    s = _spectra()
    if f"{name}_photons" not in s:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(available_sources())}")
    return s[f"{name}_energy_kev"], s[f"{name}_photons"]


def resample(energy: np.ndarray, photons: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Photon counts of a spectrum re-binned onto ``grid`` (bin centres; counts conserved)."""
    dens = photons / np.gradient(energy)
    out = np.interp(grid, energy, dens, left=0.0, right=0.0) * np.gradient(grid)
    return out * (photons.sum() / max(out.sum(), 1e-300))


@dataclass(frozen=True)
class Layer:
    """A slab in the beam path of the detector: material and thickness in cm."""

    material: Material
    thickness_cm: float

    def transmission(self, energy_kev: np.ndarray) -> np.ndarray:
        mu = mass_attenuation(self.material, energy_kev) * self.material.density
        return np.exp(-mu * self.thickness_cm)


def layer_signal(energy_kev: np.ndarray, front: tuple[Layer, ...], sensor: Layer) -> np.ndarray:
    """Energy deposited in ``sensor`` per incident photon, behind the ``front`` layers; ``(E,)``."""
    t = np.ones_like(energy_kev)
    for layer in front:
        t = t * layer.transmission(energy_kev)
    return energy_kev * t * (1.0 - sensor.transmission(energy_kev))


def effective_quanta(photons: np.ndarray, response: np.ndarray) -> float:
    """Noise-equivalent quanta per incident photon of an energy-integrating channel.

    The signal ``S = Σ N(E) r(E)`` of Poisson photon numbers has variance ``Σ N(E) r(E)²``, so
    it is as noisy as a counting detector seeing ``S² / Var`` photons (Swank's factor).
    """
    s = float(np.sum(photons * response))
    v = float(np.sum(photons * response**2))
    return s * s / v / float(np.sum(photons)) if v > 0 else 0.0
