"""Synthetic scan throughput: scans/s of ``generate_scan`` in worker processes.

Each case runs ``--workers`` processes (one thread each) that generate scans from distinct
seeds for ``--seconds`` after a warm-up (renderer tables, first allocations), and reports
scans/s by the wall clock and by CPU time (``workers × scans / CPU seconds``: what the same
number of otherwise idle cores gives), plus the single-process per-stage split (scene,
annotation, rendering, false colour) of the baggage case. ``--write`` also times
``xscan synth``-style dataset writing (PNGs and COCO) of the first case.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_synth.py [--workers 2] [--seconds 20]

The load average is printed with the results: on a shared machine other processes take CPU
time from the workers, so compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

CASES = (("baggage", (512, 512)), ("baggage", (1024, 1024)), ("cargo", (1024, 2048)))


def _init() -> None:
    import cv2

    cv2.setNumThreads(1)
    from xscan.synth.generator import generate_scan

    generate_scan("baggage", (128, 128), 0)  # build renderer tables once per worker
    generate_scan("cargo", (128, 256), 0)


def _batch(args: tuple[str, tuple[int, int], int, float]) -> tuple[int, float]:
    """Generate scans from ``seed0`` upward until ``seconds`` have passed.

    Returns the count and the CPU seconds this worker spent on them.
    """
    from xscan.synth.generator import generate_scan

    kind, size, seed0, seconds = args
    t_end = time.perf_counter() + seconds
    c0 = time.process_time()
    n = 0
    while time.perf_counter() < t_end:
        generate_scan(kind, size, seed0 + n)
        n += 1
    return n, time.process_time() - c0


def throughput(
    pool: ProcessPoolExecutor, workers: int, kind: str, size, seconds: float
) -> tuple[float, float]:
    """(wall-clock scans/s, scans/s that ``workers`` idle cores would give by CPU time)."""
    pool.submit(_batch, (kind, size, 10**6, 1.0)).result()  # warm this size in one worker
    t0 = time.perf_counter()
    jobs = [(kind, size, 10**7 * (w + 1), seconds) for w in range(workers)]
    res = list(pool.map(_batch, jobs))
    dt = time.perf_counter() - t0
    n = sum(r[0] for r in res)
    cpu = sum(r[1] for r in res)
    return n / dt, workers * n / cpu


def stage_split(size: tuple[int, int], n: int = 20) -> dict[str, float]:
    """Mean CPU milliseconds per stage of one baggage scan in this process (one thread)."""
    import cv2

    from xscan.synth.baggage import build_baggage
    from xscan.synth.colormap import false_color
    from xscan.synth.generator import _mu_eff, generate_scan
    from xscan.synth.render import get_renderer

    cv2.setNumThreads(1)
    generate_scan("baggage", size, 0)
    r = get_renderer("baggage")
    t = np.zeros(4)
    for s in range(n):
        rng = np.random.default_rng(s)
        t0 = time.process_time()
        scene = build_baggage(rng, size, s % 2 == 0)
        t1 = time.process_time()
        scene.annotate(_mu_eff("baggage", scene.materials()))
        t2 = time.process_time()
        lo, hi = r.transmission(scene.path_lengths(), rng)
        t3 = time.process_time()
        false_color(lo, hi, "baggage")
        t4 = time.process_time()
        scene.release()
        t += [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
    ms = t / n * 1000
    return dict(
        zip(("scene", "annotate", "render", "false_colour"), ms.round(1).tolist(), strict=True)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--write", action="store_true", help="also time dataset writing")
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    with ProcessPoolExecutor(args.workers, initializer=_init) as pool:
        for kind, size in CASES:
            wall, cpu = throughput(pool, args.workers, kind, size, args.seconds)
            print(
                f"{kind:8s} {size[1]}x{size[0]}: {wall:6.1f} scans/s wall clock, "
                f"{cpu:6.1f} scans/s by CPU time ({args.workers} worker processes, "
                f"{args.seconds:.0f} s)"
            )
    print("baggage 512x512 single-process stage split (CPU ms):", stage_split((512, 512)))
    if args.write:
        from xscan.synth.generator import write_dataset

        tmp = tempfile.mkdtemp()
        try:
            n = 200
            t0 = time.perf_counter()
            write_dataset(tmp, "baggage", n, (512, 512), 0, workers=args.workers)
            dt = time.perf_counter() - t0
            print(f"write_dataset baggage 512x512 n={n}: {n / dt:.1f} scans/s (PNGs + COCO)")
        finally:
            shutil.rmtree(tmp)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
