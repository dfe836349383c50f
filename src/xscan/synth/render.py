"""Path lengths per material -> low/high-energy transmission images of a dual-energy scanner.

The exact polychromatic transmission of a ray is ``T_c = Σ_E w_c(E) exp(−Σ_m μ_m(E) a_m)``
(``w_c`` the channel's detected-signal weights, ``a_m = ρ_m L_m`` areal densities). Evaluating it
per pixel over ~150 energies is too slow for online data, so materials are decomposed into two
basis materials, polyethylene and iron: ``μ_m(E) ≈ c_m1 μ_PE(E) + c_m2 μ_Fe(E)`` (weighted least
squares in relative error over the detected spectra, hardened and unhardened, then polished by
Gauss–Newton on the resulting −ln T errors across thicknesses). A pixel is then
two numbers ``A_k = Σ_m c_mk a_m``, and ``−ln T`` of both channels follows from a precomputed
2D table: ``−ln T_c = m_c · A − h_c(A)``, the thin-slab linear term exact and the beam-hardening
deficit ``h_c`` interpolated bilinearly on a square-root grid (dense where attenuation is small).

Materials with absorption edges inside the spectrum (tin, silver, tungsten, gold, lead, …) do not
fit two bases; any material whose fitted −ln T is off by more than ``HEAVY_TOLERANCE`` somewhere in
the useful range is "heavy", and pixels containing one are integrated exactly over energy
(their basis-coordinates plus each heavy material's own μ(E)). They are few, so this stays fast.

Then the detector: Gaussian focal-spot/detector blur, Poisson photon noise (Gaussian
approximation with the channel's noise-equivalent quanta, plus a dark-noise floor), residual
per-column gain and, for linacs, per-row pulse dose fluctuation. Output is clipped to
``[T_MIN, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from xscan.synth.attenuation import mass_attenuation
from xscan.synth.materials import MATERIALS, Material, get_material
from xscan.synth.scanner import Scanner

BASIS = ("polyethylene", "iron")
HEAVY_TOLERANCE = 0.02
T_MIN = 1.0 / 65535.0
# LUT domain in basis areal densities (g/cm²); s = sqrt(A) is sampled uniformly.
SHEAR = 0.5  # u1 = A1 + SHEAR * A2 stays ≥ 0 for metals with negative polyethylene coefficient
LUT_N = 192
# The table reaches, for each basis alone, the areal density where −ln T_high = L_TABLE_MAX.
L_TABLE_MAX = 14.0
_REMAP_ROWS = 16384
# Limit of −ln T for the thickness sweep that decides which materials are heavy.
L_USEFUL = 9.0


@dataclass(frozen=True)
class Decomposition:
    """A material in the basis: ``coef`` ``(2,)`` (polyethylene, iron) per g/cm² of it; ``heavy``
    when the fit is worse than ``HEAVY_TOLERANCE`` (``fit_error``, relative, in −ln T) and the
    material is integrated exactly instead."""

    coef: np.ndarray
    heavy: bool
    fit_error: float


class Renderer:
    """Fast polychromatic renderer for one :class:`~xscan.synth.scanner.Scanner`.

    Building one takes ~0.1–0.3 s (material fits and the lookup table); reuse it
    (:func:`get_renderer` caches one per scanner kind)::

        r = get_renderer("baggage")
        t_low, t_high = r.transmission({"water": lengths_cm, "steel": other_cm}, rng)
    """

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        e = scanner.energy_kev
        self._weights = np.stack([scanner.weight_low, scanner.weight_high], 1)  # (E, 2)
        self._basis_mu = np.stack([mass_attenuation(b, e) for b in BASIS])  # (2, E)
        self._fit_w = self._fit_weights()
        self._decomp: dict[str, Decomposition] = {}
        self._lut = self._build_lut()
        self._gains: dict[int, np.ndarray] = {}

    # ---------------------------------------------------------------- material decomposition
    def _fit_weights(self) -> np.ndarray:
        e, v = self.scanner.energy_kev, np.zeros_like(self.scanner.energy_kev)
        water, iron = mass_attenuation("water", e), mass_attenuation("iron", e)
        for w in (self.scanner.weight_low, self.scanner.weight_high):
            for a_w, a_fe in ((0, 0), (10, 0), (40, 0), (0, 3), (0, 10)):
                h = w * np.exp(-a_w * water - a_fe * iron)
                v += h / h.sum()
        return np.sqrt(v)

    def decomposition(self, material: str | Material) -> Decomposition:
        """Basis coefficients of a material and whether it needs exact integration."""
        m = material if isinstance(material, Material) else get_material(material)
        if m.name in self._decomp:
            return self._decomp[m.name]
        mu = mass_attenuation(m, self.scanner.energy_kev)
        w = self._fit_w / mu
        coef, *_ = np.linalg.lstsq(self._basis_mu.T * w[:, None], mu * w, rcond=None)
        coef = self._refine(mu, coef)
        err = self._fit_error(mu, coef)
        d = Decomposition(coef, err > HEAVY_TOLERANCE, err)
        self._decomp[m.name] = d
        return d

    def _relative_errors(self, mu: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Relative errors in −ln T (both channels) of a fit over the useful thickness range."""
        areal = np.geomspace(1e-3, 400.0, 120)[:, None]
        mu_fit = np.clip(coef @ self._basis_mu, 0.0, None)
        exact = -np.log(np.maximum(np.exp(-areal * mu) @ self._weights, 1e-300))
        fit = -np.log(np.maximum(np.exp(-areal * mu_fit) @ self._weights, 1e-300))
        useful = (exact[:, 1] > 0.01) & (exact[:, 1] < L_USEFUL)
        return (fit[useful] / exact[useful] - 1.0).ravel()

    def _refine(self, mu: np.ndarray, coef: np.ndarray, steps: int = 4) -> np.ndarray:
        """Gauss–Newton on the −ln T errors, starting from the least-squares fit in μ(E).

        The μ(E) fit weights energies by the spectra; what matters is −ln T across thicknesses
        (beam hardening shifts the weights), so the coefficients are polished on that directly.
        """
        best, best_err = coef, np.max(np.abs(self._relative_errors(mu, coef)), initial=0.0)
        c = coef.copy()
        for _ in range(steps):
            r = self._relative_errors(mu, c)
            if r.size == 0:
                return coef
            jac = np.stack(
                [(self._relative_errors(mu, c + d) - r) / 1e-4 for d in np.eye(2) * 1e-4], 1
            )
            c = c - np.linalg.lstsq(jac, r, rcond=None)[0]
            err = np.max(np.abs(self._relative_errors(mu, c)), initial=0.0)
            if err < best_err:
                best, best_err = c.copy(), err
        return best

    def _fit_error(self, mu: np.ndarray, coef: np.ndarray) -> float:
        """Worst relative error in −ln T of the two-basis fit over the useful thickness range."""
        return float(np.max(np.abs(self._relative_errors(mu, coef)), initial=0.0))

    # ---------------------------------------------------------------- lookup table
    def _build_lut(self) -> np.ndarray:
        a_max = [self._areal_at(mu, L_TABLE_MAX) for mu in self._basis_mu]
        s1 = np.linspace(0.0, np.sqrt(a_max[0]), LUT_N)
        s2 = np.linspace(0.0, np.sqrt(a_max[1]), LUT_N)
        self._ds = np.array([s1[1], s2[1]], np.float64)
        # Thin-slab effective μ (cm²/g) of each basis in each channel: rows basis, cols channel.
        self._m = (self._basis_mu @ self._weights).astype(np.float32)  # (2, 2)
        a2 = s2**2
        lut = np.empty((2, LUT_N, LUT_N), np.float32)
        for i, s in enumerate(s1):
            a1 = s * s - SHEAR * a2  # (N,)
            mu = np.clip(a1[:, None] * self._basis_mu[0] + a2[:, None] * self._basis_mu[1], 0, None)
            t = np.exp(-mu) @ self._weights  # (N, 2)
            neg = -np.log(np.maximum(t, 1e-30))
            lut[:, i] = (a1[:, None] * self._m[0] + a2[:, None] * self._m[1] - neg).T
        return lut

    def _areal_at(self, mu: np.ndarray, neg_log_high: float) -> float:
        """Areal density (g/cm²) of a material with μ/ρ ``mu`` where −ln T_high reaches a value."""
        areal = np.geomspace(0.01, 1e5, 600)
        t = np.exp(-np.minimum(areal[:, None] * mu, 700.0)) @ self._weights[:, 1]
        neg = -np.log(np.maximum(t, 1e-300))
        return float(areal[min(np.searchsorted(neg, neg_log_high), len(areal) - 1)])

    def _lookup(self, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
        """Bilinear ``−ln T`` ``(2, H, W) float32`` (low, high) for basis areal densities.

        ``cv2.remap`` does the bilinear interpolation (fixed-point weights in steps of 1/32 of a
        table cell; the table is fine enough that this costs < 0.3 % in −ln T). Arrays stay
        planar: numpy is slow on a trailing axis of length 2.
        """
        u1 = cv2.scaleAdd(a2, SHEAR, a1)
        np.maximum(u1, 0, out=u1)
        np.sqrt(u1, out=u1)
        u1 *= np.float32(1.0 / self._ds[0])
        u2 = np.maximum(a2, 0)
        np.sqrt(u2, out=u2)
        u2 *= np.float32(1.0 / self._ds[1])
        np.minimum(u1, np.float32(LUT_N - 1), out=u1)  # OpenCV's border path is slower
        np.minimum(u2, np.float32(LUT_N - 1), out=u2)
        out = np.empty((2,) + a1.shape, np.float32)
        for c in range(2):
            for r0 in range(0, a1.shape[0], _REMAP_ROWS):  # cv2 maps: < 32767 px a side
                sl = slice(r0, r0 + _REMAP_ROWS)
                cv2.remap(
                    self._lut[c],
                    u2[sl],
                    u1[sl],
                    cv2.INTER_LINEAR,
                    dst=out[c, sl],
                    borderMode=cv2.BORDER_REPLICATE,
                )
            # −ln T = m·A − h(A): the linear term is exact, only the hardening deficit is
            # tabulated.
            np.negative(out[c], out=out[c])
            cv2.scaleAdd(a1, float(self._m[0, c]), out[c], dst=out[c])
            cv2.scaleAdd(a2, float(self._m[1, c]), out[c], dst=out[c])
        np.maximum(out, 0, out=out)
        return out

    # ---------------------------------------------------------------- public API
    def line_integrals(self, path_lengths: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free ``(−ln T_low, −ln T_high)`` float32 ``(H, W)`` of path lengths in cm."""
        neg_log = self._line_integrals(path_lengths)
        return neg_log[0], neg_log[1]

    def _line_integrals(self, path_lengths: dict[str, np.ndarray]) -> np.ndarray:
        if not path_lengths:
            raise ValueError("path_lengths is empty: give at least one material map")
        shape = np.shape(next(iter(path_lengths.values())))
        if len(shape) != 2:
            raise ValueError(f"path lengths must be (H, W) maps, got shape {shape}")
        a1 = np.zeros(shape, np.float32)
        a2 = np.zeros(shape, np.float32)
        heavy: dict[str, np.ndarray] = {}
        for name, length in path_lengths.items():
            if np.shape(length) != shape:
                raise ValueError(
                    f"path length of {name!r} has shape {np.shape(length)}, "
                    f"expected {shape} like the other materials"
                )
            m = get_material(name)
            d = self.decomposition(m)
            length = np.asarray(length, np.float32)
            if d.heavy:
                heavy[name] = length
                continue
            # fused multiply-add: a_k += c_k ρ L
            cv2.scaleAdd(length, float(d.coef[0] * m.density), a1, dst=a1)
            cv2.scaleAdd(length, float(d.coef[1] * m.density), a2, dst=a2)
        neg_log = self._lookup(a1, a2)
        if heavy:
            self._exact_heavy(a1, a2, heavy, neg_log)
        return neg_log

    def _exact_heavy(self, a1, a2, heavy, neg_log, chunk: int = 8192) -> None:
        names = list(heavy)
        mask = np.zeros(a1.shape, bool)
        for name in names:
            mask |= heavy[name] > 0
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        e = self.scanner.energy_kev
        mus = [self._basis_mu[0], self._basis_mu[1]]
        mus += [mass_attenuation(n, e) * get_material(n).density for n in names]
        mu = np.stack(mus).astype(np.float32)  # (2 + H, E)
        cols = [a1.ravel(), a2.ravel()] + [heavy[n].ravel() for n in names]
        w = self._weights.astype(np.float32)
        flat = neg_log.reshape(2, -1)
        for s in range(0, idx.size, chunk):
            sel = idx[s : s + chunk]
            x = np.stack([c[sel] for c in cols], 1)  # (P, 2 + H)
            att = np.maximum(x @ mu, 0)
            t = np.exp(-att) @ w  # (P, 2)
            flat[:, sel] = -np.log(np.maximum(t, 1e-30)).T

    def transmission(
        self,
        path_lengths: dict[str, np.ndarray],
        rng: np.random.Generator | None = None,
        noise: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Detected ``(t_low, t_high)`` float32 ``(H, W)`` in ``[T_MIN, 1]``.

        ``path_lengths``: material name -> ``(H, W)`` path length in cm. With ``noise`` the
        detector effects are applied (blur, photon noise, gain); ``rng`` seeds the noise (a fresh
        default generator if None). ``noise=False`` gives the ideal, unblurred transmission.
        """
        t = self._line_integrals(path_lengths)
        np.negative(t, out=t)
        np.exp(t, out=t)
        if noise:
            self._detect(t, rng if rng is not None else np.random.default_rng())
        np.clip(t, T_MIN, 1.0, out=t)
        return t[0], t[1]

    def _detect(self, t: np.ndarray, rng: np.random.Generator) -> None:
        """Detector effects in place on planar ``(2, H, W)`` transmissions."""
        sc = self.scanner
        _, h, w = t.shape
        noise = np.empty_like(t)
        # OpenCV's generator is ~3x faster than numpy's; seeded from ``rng`` so runs repeat.
        cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))
        cv2.randn(noise.reshape(2 * h, w), 0.0, 1.0)
        gain = self._gain(w)
        for c, quanta in enumerate((sc.quanta_low, sc.quanta_high)):
            if sc.focal_blur_sigma_px > 0:
                cv2.GaussianBlur(
                    t[c],
                    (0, 0),
                    sc.focal_blur_sigma_px,
                    dst=t[c],
                    borderType=cv2.BORDER_REPLICATE,
                )
            # Poisson noise of `quanta` photons (Gaussian approximation) plus a dark floor.
            sigma = t[c] * np.float32(1.0 / quanta)
            sigma += np.float32(sc.dark_noise**2)
            np.sqrt(sigma, out=sigma)
            sigma *= noise[c]
            t[c] += sigma
            t[c] *= gain
        if sc.pulse_sigma > 0:
            pulse = 1.0 + sc.pulse_sigma * rng.standard_normal((h, 1), dtype=np.float32)
            t *= pulse

    def _gain(self, width: int) -> np.ndarray:
        g = self._gains.get(width)
        if g is None:
            g = self._gains[width] = self.scanner.column_gain(width)
        return g

    def slab(
        self, material: str | Material, thickness_cm: np.ndarray | float, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free ``(t_low, t_high)`` float64 of slabs, same shape as ``thickness_cm``.

        ``exact=False`` uses the renderer's decomposition (what scenes get); ``exact=True`` the
        direct polychromatic integral over energy.
        """
        m = material if isinstance(material, Material) else get_material(material)
        th = np.asarray(thickness_cm, np.float64)
        if exact:
            mu = mass_attenuation(m, self.scanner.energy_kev) * m.density
            t = np.exp(-th.reshape(-1, 1) * mu) @ self._weights
            return t[:, 0].reshape(th.shape), t[:, 1].reshape(th.shape)
        if m.name not in MATERIALS:
            raise ValueError(f"material {m.name!r} is not in MATERIALS; use exact=True")
        l_low, l_high = self.line_integrals({m.name: th.reshape(1, -1).astype(np.float32)})
        t_low, t_high = np.exp(-l_low.astype(np.float64)), np.exp(-l_high.astype(np.float64))
        return t_low.reshape(th.shape), t_high.reshape(th.shape)

    def effective_mu(self, material: str | Material) -> tuple[float, float]:
        """Thin-slab linear attenuation ``(μ_low, μ_high)`` in 1/cm at nominal density."""
        m = material if isinstance(material, Material) else get_material(material)
        mu = mass_attenuation(m, self.scanner.energy_kev) * m.density
        return float(self._weights[:, 0] @ mu), float(self._weights[:, 1] @ mu)


_RENDERERS: dict[str, Renderer] = {}


def get_renderer(kind: str) -> Renderer:
    """A cached :class:`Renderer` of the default ``baggage`` or ``cargo`` scanner."""
    from xscan.synth.scanner import get_scanner

    if kind not in _RENDERERS:
        _RENDERERS[kind] = Renderer(get_scanner(kind))
    return _RENDERERS[kind]
