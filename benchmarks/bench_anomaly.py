"""Anomaly-model latency in the torch-free runtime: per scan and per megapixel.

    .venv/bin/python benchmarks/bench_anomaly.py models/xscan-anomaly-cargo.onnx \
        runs/data/anomaly_cargo_test/images --n 8 --threads 2

Scans are decoded once; each is scored ``--repeat`` times after one warm-up (tiling,
preprocessing, onnxruntime, stitching, normalisation: everything ``xscan score`` does per scan
except file IO). Prints a Markdown row and ``/proc/loadavg`` (the machine may be shared).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from xscan.imageio import IMAGE_SUFFIXES, read_image
from xscan.runtime import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    scans = [read_image(p) for p in files[: args.n]]
    model = load_model(args.model, threads=args.threads)
    model.predict(scans[0])  # warm-up
    times, mps, tiles = [], [], []
    for img in scans:
        for _ in range(args.repeat):
            t = time.perf_counter()
            pred = model.predict(img)
            times.append(time.perf_counter() - t)
            mps.append(img.shape[0] * img.shape[1] / 1e6)
            tiles.append(pred.tiles)
    med = statistics.median(times)
    per_mp = statistics.median(t / m for t, m in zip(times, mps, strict=True))
    h, w = scans[0].shape[:2]
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"| {Path(args.model).name} | {w}x{h} | {statistics.median(tiles):.0f} | "
        f"{args.threads} | {med * 1000:.0f} ms | {per_mp * 1000:.0f} ms/MP | "
        f"{platform.processor() or platform.machine()} | loadavg {' '.join(load)} |"
    )


if __name__ == "__main__":
    main()
