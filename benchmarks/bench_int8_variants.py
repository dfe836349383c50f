"""INT8 recipes of one FP32 detector, compared on real and synthetic scans in one run.

Each variant quantises the same FP32 file (``xscan.export.quantize.quantize_int8``) with its
own calibration folders, calibration method and set of nodes kept in float, and is measured
through the runtime exactly as deployed:

* bag level on a dataset with image-level labels (e.g. the real SIXray scans): AUROC and the
  detection rate at 1 / 5 / 10 % false alarms, thresholds calibrated per model on that
  set's benign scans (what ``xscan export --gate-bags`` gates on, at the default FAR);
* AP50 on an ``xscan synth`` folder (what ``--gate-data`` gates on);
* batch-1 latency and batch-8 throughput, FP32 and every variant interleaved (medians).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_int8_variants.py \\
        --onnx models/xscan-detector-baggage.onnx \\
        --bags ../shared/data/xray-real-dev/sixray --bags-format xray_real_dev \\
        --bags-split heldout --boxed data/synth/baggage_test_256 \\
        --variant 'first:data/synth/baggage_val_256:minmax:base' \\
        --variant 'shipped:data/synth/baggage_val_256+data/tip/sixray_tip_256:minmax:lateral'

A variant is ``NAME:CALIB[+CALIB...]:METHOD:FLOAT`` with METHOD ``minmax``, ``percentile`` or
``entropy`` and FLOAT ``base`` (the decode tail, head output convolutions and HardSwish
backbone in float: the recipe before the FPN's lateral path was kept in float), ``lateral``
(the current default: base plus the FPN's lateral path) or ``base+PREFIX[+PREFIX...]``
(base plus the nodes whose names start with the given prefixes, e.g. ``/model/fpn/``).
Calibration uses ``--calib-count`` images shared evenly between the folders. Results:
docs/benchmarks.md, "INT8 on real scans".
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_variant(text: str) -> dict:
    try:
        name, calib, method, floats = text.split(":", 3)
    except ValueError:
        raise SystemExit(f"--variant {text!r}: expected NAME:CALIB[+CALIB]:METHOD:FLOAT") from None
    parts = floats.split("+")
    if parts[0] not in ("base", "lateral"):
        raise SystemExit(f"--variant {text!r}: FLOAT must start with base or lateral")
    return {
        "name": name,
        "calib": calib.split("+"),
        "method": method,
        "keep_lateral": parts[0] == "lateral",
        "float_prefixes": tuple(parts[1:]),
    }


def bag_metrics(model, records, fars=(0.01, 0.05, 0.10)) -> dict:
    from xscan.export.gate import image_scores
    from xscan.metrics.alarm import alarm_metrics

    threat = np.array([bool(r.is_threat) for r in records])
    (scores,) = image_scores([model], records)
    m = alarm_metrics(scores, threat, fars)
    return {
        "auroc": m["auroc"],
        "dr": {k: v["detection_rate"] for k, v in m["at_far"].items()},
    }


def timing(paths: dict[str, Path], size_hw, threads: int, rounds: int) -> dict:
    """Median batch-1 latency (ms) and batch-8 throughput (img/s), engines interleaved."""
    from xscan.runtime.session import open_session

    sessions = {k: open_session(p, providers="cpu", threads=threads) for k, p in paths.items()}
    out = {k: {"b1": [], "b8": []} for k in paths}
    rng = np.random.default_rng(0)
    for b, key, reps in ((1, "b1", 20), (8, "b8", 4)):
        x = rng.random((b, 3, *size_hw), dtype=np.float32)
        for s in sessions.values():
            for _ in range(3):
                s.run(x)
        for _ in range(rounds):
            for k, s in sessions.items():
                t = time.perf_counter()
                for _ in range(reps):
                    s.run(x)
                dt = (time.perf_counter() - t) / reps
                out[k][key].append(1000 * dt if b == 1 else b / dt)
    return {k: {m: statistics.median(v) for m, v in d.items()} for k, d in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", required=True, help="FP32 model exported by xscan export")
    ap.add_argument("--bags", help="dataset with image-level labels (bag-level measures)")
    ap.add_argument("--bags-format")
    ap.add_argument("--bags-split")
    ap.add_argument("--boxed", help="xscan synth folder (AP50)")
    ap.add_argument("--boxed-count", type=int, default=400)
    ap.add_argument("--variant", action="append", default=[], help="see the module docstring")
    ap.add_argument("--calib-count", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (0: no timing)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    from xscan.export.gate import evaluate, load_bags, load_labelled
    from xscan.export.quantize import calibration_set, quantize_int8
    from xscan.runtime import load_model

    fp32 = load_model(args.onnx, threads=args.threads)
    spec = fp32.spec
    records = load_bags(args.bags, args.bags_format, args.bags_split)[0] if args.bags else None
    boxed = load_labelled(args.boxed, spec, limit=args.boxed_count) if args.boxed else None

    def measure(model) -> dict:
        row = bag_metrics(model, records) if records is not None else {}
        if boxed is not None:
            row["ap50"] = evaluate(model, boxed)[0]
        return row

    results = {"fp32": measure(fp32)}
    paths = {"fp32": Path(args.onnx)}
    print(f"fp32 {json.dumps(results['fp32'])}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.variant:
            v = parse_variant(text)
            out = Path(tmp) / f"{v['name']}.int8.onnx"
            calib = calibration_set(v["calib"], spec, limit=args.calib_count)
            quantize_int8(
                args.onnx,
                out,
                calib,
                keep_lateral=v["keep_lateral"],
                method=v["method"],
                float_prefixes=v["float_prefixes"],
            )
            results[v["name"]] = {"variant": text, **measure(load_model(out, threads=args.threads))}
            paths[v["name"]] = out
            print(f"{v['name']} {json.dumps(results[v['name']])}", flush=True)
        if args.rounds:
            speed = timing(paths, spec.input_size, args.threads, args.rounds)
            for k, t in speed.items():
                results[k]["b1_ms"], results[k]["b8_img_s"] = t["b1"], t["b8"]
                print(
                    f"{k:12s} b1 {t['b1']:6.2f} ms ({speed['fp32']['b1'] / t['b1']:.2f}x)  "
                    f"b8 {t['b8']:6.1f} img/s ({t['b8'] / speed['fp32']['b8']:.2f}x)",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
