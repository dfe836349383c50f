"""Training-step throughput of the default detector network by memory layout.

One fwd + bwd + AdamW step of the CenterNet of ``configs/detect_baggage_synth.yaml``
(MobileNetV3-Small, FPN, stride-8 head; 11 classes) on random 256x256 batches, built fresh for
each variant and timed in one run: NCHW eager, NHWC (``channels_last``, what
``train.channels_last`` does) and, with ``--compile``, NCHW under ``torch.compile``; the first
variant is timed again at the end to show drift. With ``--backbones a,b,...`` it times the
NHWC network with each backbone in turn instead (name one twice to see drift). Results:
docs/benchmarks.md, "Detector training".

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py [--threads 1] [--compile]
        [--channels 64] [--backbones mobilenet_v3_small,shufflenet_v2_x0_5]
"""

from __future__ import annotations

import argparse
import time

import torch

from xscan.models.centernet import CenterNet


def make(channels: int = 64, backbone: str = "mobilenet_v3_small") -> CenterNet:
    torch.manual_seed(0)
    return CenterNet(
        11,
        3,
        (0.5,) * 3,
        (0.25,) * 3,
        backbone=backbone,
        fpn_channels=channels,
        head_channels=channels,
    )


def bench(model, x, label: str, steps: int, rounds: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        out = model(x)
        (out["heatmap"].float().mean() + out["ltrb"].float().mean()).backward()
        opt.step()
        opt.zero_grad()

    t0 = time.perf_counter()
    step()
    step()
    warm = time.perf_counter() - t0
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(x.shape[0] * steps / (time.perf_counter() - t))
    print(
        f"| {label} | {max(rates):.1f} | {', '.join(f'{r:.1f}' for r in rates)} | {warm:.1f} s |",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes)")
    p.add_argument("--channels", type=int, default=64, help="FPN and head width (recipe: 64)")
    p.add_argument(
        "--backbones",
        default="",
        help="comma-separated backbones (xscan.models.backbone.BACKBONES) to time in NHWC",
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x = torch.rand(a.batch, 3, a.size, a.size)
    print(
        f"batch {a.batch}, {a.size} px, {a.threads} thread(s), FPN/head {a.channels} channels, "
        f"torch {torch.__version__}"
    )
    print("| variant | images/s (best) | rounds | first two steps |\n|---|---|---|---|")
    if a.backbones:
        xl = x.contiguous(memory_format=torch.channels_last)
        for name in a.backbones.split(","):
            net = make(a.channels, name).to(memory_format=torch.channels_last)
            bench(net, xl, f"NHWC {name}", a.steps, a.rounds)
        return
    bench(make(a.channels), x, "NCHW eager", a.steps, a.rounds)
    nhwc = make(a.channels).to(memory_format=torch.channels_last)
    bench(nhwc, x.contiguous(memory_format=torch.channels_last), "NHWC eager", a.steps, a.rounds)
    if a.compile:
        bench(torch.compile(make(a.channels)), x, "NCHW torch.compile", a.steps, a.rounds)
    bench(make(a.channels), x, "NCHW eager (again)", a.steps, a.rounds)


if __name__ == "__main__":
    main()
