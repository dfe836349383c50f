"""Training-data throughput: items/s of each source kind, one process, in network-input space.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py \
        --real /work/shared/data/xray-real-dev --size 320 --n 60

Sources measured: offline records (the real-dev SIXray scans, decode + letterbox), the same
with the X-ray augmentation pipeline, online TIP of synthetic threats into the benign SIXray
scans, and online synthetic baggage scans. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from xscan.config import DataSource
from xscan.data.mixture import build_dataset
from xscan.spec import ModelSpec

CLASSES = ("firearm", "knife", "scissors", "pliers", "wrench", "hammer")


def _rate(ds, n: int) -> float:
    ds[0]  # warm caches (attenuation tables, decoder)
    t = time.perf_counter()
    for i in range(1, n + 1):
        ds[i % len(ds)]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", required=True, help="xray-real-dev folder")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--n", type=int, default=60)
    args = ap.parse_args()
    spec = ModelSpec(
        task="detect", class_names=CLASSES, input_size=(args.size, args.size), arch="bench"
    )
    six = os.path.join(args.real, "sixray")
    cases = {
        "offline real SIXray (decode + letterbox)": (
            [DataSource(kind="xray_real_dev", path=six)],
            None,
        ),
        "offline real SIXray + augmentation": ([DataSource(kind="xray_real_dev", path=six)], {}),
        "TIP: synthetic threats into benign SIXray": (
            [
                DataSource(
                    kind="tip",
                    params={
                        "backgrounds": os.path.join(six, "images"),
                        "pattern": "N*.jpg",
                        "threats": {"kind": "synth", "per_category": 4},
                    },
                )
            ],
            {},
        ),
        "online synthetic baggage": ([DataSource(kind="synth", params={"kind": "baggage"})], {}),
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; input {args.size}²"
    )
    print("| source | items/s |\n|---|---|")
    for name, (sources, augment) in cases.items():
        ds = build_dataset(
            sources,
            spec,
            train=augment is not None,
            samples_per_epoch=10_000,
            seed=0,
            augment=augment or {},
        )
        print(f"| {name} | {_rate(ds, args.n):.1f} |", flush=True)


if __name__ == "__main__":
    main()
