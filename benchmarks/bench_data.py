"""Training-data throughput: items/s of each source kind, one process, in network-input space.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py \
        --real /work/shared/data/xray-real-dev --size 320 --n 60

Sources measured: offline records (the real-dev SIXray scans, decode + letterbox), the same
with the X-ray augmentation pipeline, online TIP of synthetic threats into the benign SIXray
scans, and online synthetic baggage scans. Prints a Markdown table.

With ``--config``, the training items of that experiment instead, with and without
``data.cache_images`` (the cache filled first, as after the first epoch), in alternating
rounds of ``--n`` items of one epoch:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py \
        --config configs/detect_baggage_synth.yaml --n 600 --rounds 3
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


def bench_cache(config: str, n: int, rounds: int) -> None:
    import dataclasses

    from xscan.config import load_config
    from xscan.train.main import build_train_dataset

    cfg = load_config(config)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; {config}, {n} items of epoch 1"
    )
    built = {}
    for cache in (False, True):
        data = dataclasses.replace(cfg.data, cache_images=cache)
        ds = build_train_dataset(dataclasses.replace(cfg, data=data))
        if cache:
            for src in ds.sources:
                for i in range(len(getattr(src, "records", ()))):
                    src.get(i)
        ds.set_epoch(1)
        built[cache] = ds
    print("| data.cache_images | ms per item, each round |\n|---|---|")
    times = {False: [], True: []}
    for _ in range(rounds):
        for cache, ds in built.items():
            t = time.perf_counter()
            for i in range(n):
                ds[i % len(ds)]
            times[cache].append(1e3 * (time.perf_counter() - t) / n)
    for cache, ms in times.items():
        print(f"| {str(cache).lower()} | {', '.join(f'{m:.2f}' for m in ms)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", help="xray-real-dev folder")
    ap.add_argument("--config", help="measure this experiment's training items, cache on/off")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3, help="with --config")
    args = ap.parse_args()
    if args.config:
        bench_cache(args.config, args.n, args.rounds)
        return
    if not args.real:
        ap.error("--real or --config is required")
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
