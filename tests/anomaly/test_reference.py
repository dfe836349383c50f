from __future__ import annotations

import cv2
import numpy as np

from xscan.anomaly.reference import attenuation, reference_map


def _vehicle(seed: int, h: int = 160, w: int = 400) -> np.ndarray:
    """A transmission image (H, W) float32 with a box-like load and smooth texture."""
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w), np.float32)
    a[30:140, 20:380] = 0.6
    for _ in range(25):
        y, x = rng.integers(35, 125), rng.integers(25, 360)
        a[y : y + rng.integers(8, 20), x : x + rng.integers(10, 30)] += rng.uniform(0.2, 0.8)
    a += cv2.GaussianBlur(rng.normal(0, 0.15, (h, w)).astype(np.float32), (0, 0), 3)
    return np.exp(-np.clip(a, 0, None))


def _crossing(t: np.ndarray, dx: float, dy: float, sx: float, seed: int) -> np.ndarray:
    """Another drive-through: shifted, stretched along the travel axis, fresh noise."""
    h, w = t.shape
    m = np.array([[sx, 0, dx], [0, 1.0, dy]], np.float32)
    out = cv2.warpAffine(t, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape).astype(np.float32)
    return np.clip(out * np.exp(noise), 1e-3, 1.0).astype(np.float32)


def _as_raw(t: np.ndarray) -> np.ndarray:
    return np.stack([t, t], axis=2).astype(np.float32)  # low/high pair


def test_attenuation_of_gray_and_raw():
    t = np.full((4, 5), 0.5, np.float32)
    np.testing.assert_allclose(attenuation(_as_raw(t)), np.log(2.0), rtol=1e-5)
    np.testing.assert_allclose(attenuation((t * 255).astype(np.uint8)), np.log(2.0), atol=0.01)


def test_hidden_block_found_after_alignment_and_benign_crossing_stays_quiet():
    base = _vehicle(0)
    refs = [_as_raw(_crossing(base, 6.5, -3.0, 1.02, 1)), _as_raw(_crossing(base, -4, 2, 0.98, 2))]
    benign = _crossing(base, 1.0, 1.0, 1.0, 3)
    hidden = benign.copy()
    hidden[70:95, 200:240] *= np.exp(-0.35)  # 0.35 of extra attenuation inside the load
    r_benign = reference_map(_as_raw(benign), refs)
    r_hidden = reference_map(_as_raw(hidden), refs)
    assert r_hidden.score > 3 * r_benign.score
    y, x = np.unravel_index(np.argmax(r_hidden.amap), r_hidden.amap.shape)
    assert 65 <= y <= 100 and 195 <= x <= 245
    assert r_hidden.amap.shape == hidden.shape
    assert all(cc > 0.8 for cc in r_hidden.ecc)  # ECC converged on both references
