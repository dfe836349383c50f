"""PyTorch eager vs onnxruntime FP32 vs onnxruntime INT8 on this CPU, in one run.

Same model, same inputs (generated scans, preprocessed once by ``xscan.preprocess``):
latency at batch 1 and throughput at batch 8 at the model's input size, achieved GFLOP/s
against a matmul peak measured in the same run, and (with labelled data) AP50 of FP32 vs
INT8. The machine load (``/proc/loadavg``) is recorded before and after, because on a
shared 2-core machine another process's threads change everything.

    python benchmarks/bench_runtime.py --checkpoint runs/detect_baggage_synth/best.pt \\
        --gate-data data/synth/baggage_test_256 --out bench_runtime.json

Without ``--checkpoint`` the model of ``configs/detect_baggage_synth.yaml`` is built with
seeded random weights (speed only; AP50 needs a trained model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def timed(fn, iters: int, warmup: int = 3) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(threads: int, n: int = 2048, iters: int = 5) -> float:
    """fp32 GFLOP/s of an n x n matmul with torch on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, iters, 2) / 1e9


def model_flops(module, x) -> float:
    """FLOPs of one forward (multiply-add = 2) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return float(counter.get_total_flops())


def build_module(checkpoint: str | None, config: str):
    """(inference module, spec, source description)."""
    import torch

    from xscan.export.onnx_export import load_for_export

    if checkpoint:
        module, spec, _ = load_for_export(checkpoint)
        return module, spec, checkpoint
    from xscan.config import load_config
    from xscan.models import build_inference_module, build_model

    torch.manual_seed(0)
    spec = load_config(config).model
    return build_inference_module(build_model(spec).eval(), spec), spec, f"{config} (random)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="trained checkpoint (default: random weights)")
    ap.add_argument("--config", default="configs/detect_baggage_synth.yaml")
    ap.add_argument("--onnx", help="already exported FP32 model of the checkpoint")
    ap.add_argument("--int8", help="already quantised INT8 model")
    ap.add_argument("--calib", help="calibration images (default: generated scans)")
    ap.add_argument("--gate-data", help="labelled xscan folder for AP50 FP32 vs INT8")
    ap.add_argument("--gate-count", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    import torch

    from xscan.export.onnx_export import export_module
    from xscan.export.parity import prepared_batch, synthetic_scans
    from xscan.export.quantize import calibration_images, quantize_int8
    from xscan.runtime.session import open_session

    load_before = loadavg()
    torch.set_num_threads(args.threads)
    module, spec, source = build_module(args.checkpoint, args.config)
    tmp = Path(tempfile.mkdtemp(prefix="xscan-bench-"))
    fp32 = Path(args.onnx) if args.onnx else export_module(module, spec, tmp / "m.onnx").path
    if args.int8:
        int8 = Path(args.int8)
    else:
        calib = (
            calibration_images(args.calib, spec, 64)
            if args.calib
            else synthetic_scans(spec, 32, seed=100)
        )
        int8 = quantize_int8(fp32, tmp / "m.int8.onnx", calib)

    batch8 = prepared_batch(spec, synthetic_scans(spec, 8, seed=1))
    batch1 = batch8[:1]
    x1, x8 = torch.from_numpy(batch1), torch.from_numpy(batch8)
    flops1 = model_flops(module, x1)
    peak = matmul_peak(args.threads)

    rows = []

    def add(name: str, run) -> None:
        lat = timed(lambda: run(1), args.iters)
        b8 = timed(lambda: run(8), max(5, args.iters // 2))
        rows.append(
            {
                "engine": name,
                "latency_b1_ms": 1000 * lat,
                "throughput_b8_img_s": 8 / b8,
                "gflops_b1": flops1 / lat / 1e9,
                "gflops_b8": 8 * flops1 / b8 / 1e9,
            }
        )
        print(f"{name:<14} b1 {1000 * lat:7.1f} ms   b8 {8 / b8:6.1f} img/s", flush=True)

    with torch.no_grad():
        add("torch eager", lambda b: module(x1 if b == 1 else x8))
    s32 = open_session(fp32, "cpu", threads=args.threads)
    add("ORT FP32", lambda b: s32.run(batch1 if b == 1 else batch8))
    s8 = open_session(int8, "cpu", threads=args.threads)
    add("ORT INT8", lambda b: s8.run(batch1 if b == 1 else batch8))

    eager, f32, q8 = rows
    result = {
        "model": source,
        "spec": {
            "name": spec.name,
            "arch": spec.arch,
            "arch_params": spec.arch_params,
            "input_size": list(spec.input_size),
            "classes": spec.num_classes,
        },
        "gflop_per_image": flops1 / 1e9,
        "matmul_peak_gflops": peak,
        "threads": args.threads,
        "rows": rows,
        "speedup_fp32_vs_eager_b1": eager["latency_b1_ms"] / f32["latency_b1_ms"],
        "speedup_int8_vs_fp32_b1": f32["latency_b1_ms"] / q8["latency_b1_ms"],
        "speedup_int8_vs_fp32_b8": q8["throughput_b8_img_s"] / f32["throughput_b8_img_s"],
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
    }
    if args.gate_data:
        from xscan.export.gate import evaluate, load_labelled
        from xscan.runtime import load_model

        scans = load_labelled(args.gate_data, spec, limit=args.gate_count)
        ap32 = evaluate(load_model(fp32, threads=args.threads), scans)[0]
        ap8 = evaluate(load_model(int8, threads=args.threads), scans)[0]
        result.update(ap50_fp32=ap32, ap50_int8=ap8, ap50_scans=len(scans))
        print(f"AP50 FP32 {100 * ap32:.2f}  INT8 {100 * ap8:.2f}  ({len(scans)} scans)")
    result["loadavg_after"] = loadavg()
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
