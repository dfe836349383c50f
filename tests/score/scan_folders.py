"""Small generated scan folders and CLI helpers for the scoring tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def write_rgb(path: Path, rng: np.random.Generator, h: int = 48, w: int = 56) -> None:
    """A small RGB scan-like image: white background, a dark block of seeded size/level."""
    img = np.full((h, w, 3), 255, np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y : y + h // 2, x : x + w // 2] = rng.integers(0, 200, 3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` small PNG/JPEG scans in nested folders (seeded)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"lane{i % 3}"
        write_rgb(sub / (f"scan{i:04d}.png" if i % 4 else f"scan{i:04d}.jpg"), rng)
    return root


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-m", "xscan", *args], capture_output=True, text=True, env=e
    )
    if check and out.returncode != 0:
        raise AssertionError(f"xscan {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def load_results(run_dir: Path, drop_timings: bool = True) -> list[dict]:
    recs = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    if drop_timings:
        for r in recs:
            r.pop("timings_ms", None)
    return recs
