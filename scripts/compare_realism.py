"""Compare synthetic baggage scans with real SIXray scans: statistics, distances and a grid.

python scripts/compare_realism.py --real /path/to/sixray --out docs/img/synth_vs_sixray.png

``--real`` is a SIXray folder (``images/*.jpg``) or any folder of false-colour scans. Prints
the distances of :mod:`xscan.synth.realism` and writes a side-by-side PNG grid (real scans on
the top rows, synthetic ones below); ``--json`` also saves the numbers. The real scans are read,
never copied; keep the grid small when it is committed as a figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from xscan.synth.generator import SynthOptions, generate_scan
from xscan.synth.realism import compare_sets, image_stats, resize_long_side, thumbnail_grid

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _real_files(root: Path, n: int, seed: int) -> list[Path]:
    folder = root / "images" if (root / "images").is_dir() else root
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(SUFFIXES)}) found")
    idx = np.random.default_rng(seed).permutation(len(files))[:n]
    return [files[i] for i in sorted(idx)]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _write_small_png(path: Path, rgb: np.ndarray) -> None:
    """A documentation figure: 128-colour palette PNG when Pillow is there, else plain PNG."""
    try:
        from PIL import Image
    except ImportError:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"{path}: PNG encoding failed") from None
        path.write_bytes(buf.tobytes())
        return
    img = Image.fromarray(rgb).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", required=True, type=Path, help="folder of real scans (SIXray)")
    ap.add_argument("--out", required=True, type=Path, help="PNG grid to write")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--n-real", type=int, default=120)
    ap.add_argument("--n-synth", type=int, default=120)
    ap.add_argument("--size", type=int, default=512, help="synthetic scan side (pixels)")
    ap.add_argument("--clutter", default="medium")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid-cols", type=int, default=3)
    ap.add_argument("--cell", type=int, default=170, help="thumbnail size in the grid (px)")
    args = ap.parse_args(argv)

    real_files = _real_files(args.real, args.n_real, args.seed)
    real_imgs = [resize_long_side(_read_rgb(p)) for p in real_files]
    opts = SynthOptions(clutter=args.clutter, threat_fraction=0.6)
    synth_imgs = [
        generate_scan("baggage", (args.size, args.size), args.seed * 100003 + i, opts).rgb
        for i in range(args.n_synth)
    ]
    real_stats = [image_stats(im) for im in real_imgs]
    synth_stats = [image_stats(im) for im in synth_imgs]
    dist = compare_sets(real_stats, synth_stats)
    dist.update({"n_real": len(real_imgs), "n_synth": len(synth_imgs)})

    width = max(len(k) for k in dist)
    for k, v in dist.items():
        print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    c = args.grid_cols
    pick = np.random.default_rng(args.seed + 1)
    r_idx = pick.permutation(len(real_imgs))[: 2 * c]
    rows = [
        [real_imgs[i] for i in r_idx[:c]],
        [real_imgs[i] for i in r_idx[c:]],
        synth_imgs[:c],
        synth_imgs[c : 2 * c],
    ]
    labels = ["real SIXray", "real SIXray", "synthetic", "synthetic"]
    grid = thumbnail_grid(rows, labels, cell=args.cell)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write_small_png(args.out, grid)
    print(f"grid: {args.out} ({args.out.stat().st_size // 1024} KB)")
    if args.json:
        args.json.write_text(json.dumps(dist, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
