"""PyTorch eager vs onnxruntime FP32 vs onnxruntime INT8 on this CPU, in one run.

Same model, same inputs (generated scans, preprocessed once by ``xscan.preprocess``; the
ONNX Runtime engines timed interleaved, one call of each per round, medians): latency at
batch 1 and throughput at batch 8 at the model's input size, achieved GFLOP/s
against a matmul peak measured in the same run, and (with labelled data) AP50 of FP32 vs
INT8. The machine load (``/proc/loadavg``) is recorded before and after, because on a
shared 2-core machine another process's threads change everything.

    python benchmarks/bench_runtime.py --checkpoint runs/detect_baggage_synth/best.pt \\
        --gate-data data/synth/baggage_test_256 --out bench_runtime.json

Without ``--checkpoint`` the model of ``configs/detect_baggage_synth.yaml`` is built with
seeded random weights (speed only; AP50 needs a trained model); with ``--onnx`` and
``--int8`` the ONNX files are timed and that random-weight module only serves eager timing
and the FLOP count. ``--int8-ref`` adds other INT8 files (e.g. an earlier recipe) to the
interleaved loop. The CPU's SIMD flags are recorded: the int8 kernels differ with AVX2,
AVX-512 and VNNI.
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


def timed_interleaved(fns: dict[str, object], iters: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, called round-robin (one call of each per
    round), so that load changes during the run affect every engine alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_flags() -> list[str]:
    """The SIMD flags of /proc/cpuinfo that decide the int8 kernels (AVX2, AVX-512, VNNI)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return [f for f in line.split() if f in wanted]


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
    ap.add_argument(
        "--int8-ref",
        action="append",
        default=[],
        metavar="ONNX",
        help="another INT8 model (e.g. an earlier recipe) timed in the same interleaved loop; "
        "repeatable",
    )
    ap.add_argument("--no-eager", action="store_true", help="skip PyTorch eager")
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

    def add(name: str, lat: float, b8: float) -> None:
        rows.append(
            {
                "engine": name,
                "latency_b1_ms": 1000 * lat,
                "throughput_b8_img_s": 8 / b8,
                "gflops_b1": flops1 / lat / 1e9,
                "gflops_b8": 8 * flops1 / b8 / 1e9,
            }
        )
        print(f"{name:<22} b1 {1000 * lat:7.2f} ms   b8 {8 / b8:6.1f} img/s", flush=True)

    if not args.no_eager:
        with torch.no_grad():
            add(
                "torch eager",
                timed(lambda: module(x1), args.iters),
                timed(lambda: module(x8), max(5, args.iters // 2)),
            )
    # The ONNX Runtime engines are timed interleaved (one call of each per round).
    engines = {"ORT FP32": fp32, "ORT INT8": int8}
    engines.update({f"ORT INT8 {Path(p).name}": Path(p) for p in args.int8_ref})
    sessions = {k: open_session(p, "cpu", threads=args.threads) for k, p in engines.items()}
    lat1 = timed_interleaved(
        {k: (lambda s=s: s.run(batch1)) for k, s in sessions.items()}, args.iters
    )
    lat8 = timed_interleaved(
        {k: (lambda s=s: s.run(batch8)) for k, s in sessions.items()}, max(5, args.iters // 2)
    )
    for k in sessions:
        add(k, lat1[k], lat8[k])

    by_name = {r["engine"]: r for r in rows}
    f32, q8 = by_name["ORT FP32"], by_name["ORT INT8"]
    eager = by_name.get("torch eager")
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
        "speedup_fp32_vs_eager_b1": (
            eager["latency_b1_ms"] / f32["latency_b1_ms"] if eager else None
        ),
        "speedup_int8_vs_fp32_b1": f32["latency_b1_ms"] / q8["latency_b1_ms"],
        "speedup_int8_vs_fp32_b8": q8["throughput_b8_img_s"] / f32["throughput_b8_img_s"],
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_flags": cpu_flags(),
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
