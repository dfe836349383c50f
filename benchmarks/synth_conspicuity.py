"""How conspicuous each synthetic threat class is, and how the detector's AP follows it.

Generates ``--n`` baggage threat scans (the generator's default options, seeds from
``--seed``, never those of the shipped data folders) and prints, per threat class, the number
of objects, the median conspicuity (``SceneObject.conspicuity``: the object's own −ln T_high
over its mask divided by the spread of the clutter's −ln T_high at the same pixels) and the
share of objects below 1. With ``--metrics`` (the ``metrics.json`` that
``xscan eval`` writes) it adds each class's AP50 and the Spearman rank correlation between
median conspicuity and AP50. Results: docs/benchmarks.md, "Detector training".

    .venv/bin/python benchmarks/synth_conspicuity.py --n 400 --size 256 \\
        [--metrics runs/eval/best_baggage_test_256/metrics.json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr

from xscan.synth.generator import SynthOptions, generate_scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400, help="threat scans to generate")
    ap.add_argument("--size", type=int, default=256, help="square scan size in pixels")
    ap.add_argument("--seed", type=int, default=10_000_000, help="first scan seed")
    ap.add_argument("--metrics", help="metrics.json of `xscan eval` for per-class AP50")
    args = ap.parse_args()

    ratios: dict[str, list[float]] = defaultdict(list)
    for seed in range(args.seed, args.seed + args.n):
        scan = generate_scan(
            "baggage", (args.size, args.size), seed, SynthOptions(with_threat=True)
        )
        for o in scan.objects:
            if o.is_threat:
                ratios[o.category].append(o.conspicuity)

    ap50 = {}
    if args.metrics:
        with open(args.metrics) as f:
            per_class = json.load(f)["coco"]["per_class"]
        ap50 = {k: v["AP50"] for k, v in per_class.items()}

    print(f"{args.n} threat scans at {args.size} px, seeds {args.seed}..{args.seed + args.n - 1}")
    head = f"| class | objects | median conspicuity | share below 1 |{' AP50 |' if ap50 else ''}"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    rows = sorted(ratios.items(), key=lambda kv: -float(np.median(kv[1])))
    for name, r in rows:
        r = np.asarray(r)
        extra = f" {ap50[name]:.3f} |" if name in ap50 else (" – |" if ap50 else "")
        print(f"| {name} | {len(r)} | {np.median(r):.2f} | {np.mean(r < 1):.2f} |{extra}")
    common = [name for name, _ in rows if name in ap50]
    if len(common) >= 3:
        rho, p = spearmanr([np.median(ratios[c]) for c in common], [ap50[c] for c in common])
        print(
            f"Spearman rank correlation, median conspicuity vs AP50 ({len(common)} classes): "
            f"{rho:.2f} (p = {p:.3f})"
        )


if __name__ == "__main__":
    main()
