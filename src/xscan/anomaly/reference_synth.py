"""Synthetic earlier crossings for reference mode: the same truck, cleared, driven through again.

The cargo generator builds the truck and its load before it draws anomalies, so the same seed
without a threat is the same vehicle cleared. A second drive-through differs in position, speed
(stretch along the travel axis) and detector noise; :func:`simulate_crossing` applies those to
the raw transmissions. :func:`write_reference_set` writes, for every scan of an ``xscan synth``
cargo folder, ``OUT/<scan stem>/crossing<k>.png`` false-colour images of earlier cleared
crossings: the layout ``xscan eval --reference OUT`` reads.

Numpy + OpenCV + the generator only.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def simulate_crossing(
    t_low: np.ndarray,
    t_high: np.ndarray,
    rng: np.random.Generator,
    max_shift_px: float = 24.0,
    max_stretch: float = 0.02,
    noise: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Another drive-through of the same vehicle: ``(t_low, t_high)`` float32 ``(H, W)``
    shifted by up to ``max_shift_px`` (a quarter of that vertically), stretched along x by up
    to ``max_stretch``, with fresh multiplicative noise of relative size ``noise``."""
    h, w = t_low.shape
    sx = 1.0 + rng.uniform(-max_stretch, max_stretch)
    dx = rng.uniform(-max_shift_px, max_shift_px) + (1.0 - sx) * w / 2
    dy = rng.uniform(-max_shift_px / 4, max_shift_px / 4)
    m = np.array([[sx, 0.0, dx], [0.0, 1.0, dy]], np.float32)
    out = []
    for t in (t_low, t_high):
        warped = cv2.warpAffine(
            t.astype(np.float32),
            m,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=1.0,
        )
        n = np.exp(rng.normal(0.0, noise, (h, w))).astype(np.float32)
        out.append(np.clip(warped * n, 1e-4, 1.0).astype(np.float32))
    return out[0], out[1]


def write_reference_set(
    dataset: str | Path, out: str | Path, crossings: int = 2, seed: int = 0
) -> int:
    """Earlier cleared crossings for each scan of an ``xscan synth`` cargo folder; returns the
    number of scans served."""
    from xscan.synth.colormap import false_color
    from xscan.synth.generator import SynthOptions, generate_scan

    ds, out = Path(dataset), Path(out)
    coco = json.loads((ds / "annotations.json").read_text())
    rng = np.random.default_rng(seed)
    for im in coco["images"]:
        if im.get("kind", "cargo") != "cargo":
            raise ValueError(f"{ds}: reference crossings are for cargo scans, got {im['kind']}")
        cleared = generate_scan(
            "cargo", (im["height"], im["width"]), int(im["seed"]), SynthOptions(with_threat=False)
        )
        folder = out / Path(im["file_name"]).stem
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(crossings):
            lo, hi = simulate_crossing(cleared.t_low, cleared.t_high, rng)
            rgb = false_color(lo, hi, "cargo")
            cv2.imwrite(str(folder / f"crossing{k}.png"), rgb[:, :, ::-1])
    return len(coco["images"])
