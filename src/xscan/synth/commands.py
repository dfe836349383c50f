"""``xscan synth``: write a synthetic dual-energy dataset folder.

Standard library only at import time; the generator is imported by the handler.
"""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)``; a clear error otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"--size: expected WIDTHxHEIGHT such as 512x512, got {text!r}")
    return int(m.group(2)), int(m.group(1))


def tty_progress(done: int, total: int) -> None:
    """``done/total scans`` on one line of stderr, when it is a terminal."""
    import sys

    if sys.stderr.isatty():
        print(f"\r{done}/{total} scans", end="" if done < total else "\n", file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic dual-energy X-ray scans (baggage or cargo) with annotations",
        description=(
            "Write DIR/images (false colour), DIR/raw (16-bit low/high transmission), "
            "DIR/annotations.json (COCO, RLE masks) and DIR/manifest.json. The same arguments "
            "give byte-identical output whatever --workers is."
        ),
    )
    p.add_argument("--kind", default="baggage", help="baggage or cargo (default: baggage)")
    p.add_argument("--n", type=int, default=16, help="number of scans (default: 16)")
    p.add_argument(
        "--size", default=None, help="WIDTHxHEIGHT (default: 512x512 baggage, 2048x1024 cargo)"
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--threat-fraction",
        type=float,
        default=0.5,
        help="share of scans that carry a threat; the rest are clear (default: 0.5)",
    )
    p.add_argument(
        "--threats-per-scan",
        metavar="MIN-MAX",
        default=None,
        help="baggage: threats in each threat scan, drawn uniformly from MIN..MAX (e.g. 2-4 for "
        "denser training scenes; default: 1, 2 or 3, mostly 1)",
    )
    p.add_argument("--clutter", default="medium", help="baggage clutter: low, medium or high")
    p.add_argument("--no-noise", action="store_true", help="ideal detector (no blur, noise, gain)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from xscan.synth.generator import KINDS, SynthOptions, threats_range, write_dataset

    if args.kind not in KINDS:
        raise ValueError(f"--kind: expected one of {', '.join(KINDS)}, got {args.kind!r}")
    size = args.size or ("512x512" if args.kind == "baggage" else "2048x1024")
    size_hw = parse_size(size)
    if args.n < 1:
        raise ValueError(f"--n: the number of scans must be at least 1, got {args.n}")
    if args.workers < 1:
        raise ValueError(f"--workers: must be at least 1, got {args.workers}")
    if args.seed < 0:
        raise ValueError(f"--seed: must be >= 0, got {args.seed}")
    options = SynthOptions(
        threat_fraction=args.threat_fraction,
        clutter=args.clutter,
        noise=not args.no_noise,
        threats_per_scan=threats_range(args.threats_per_scan, "--threats-per-scan"),
    )
    t0 = time.perf_counter()
    manifest = write_dataset(
        args.out, args.kind, args.n, size_hw, args.seed, args.workers, options, tty_progress
    )
    n_threat = sum(1 for im in manifest["images"] if im["has_threat"])
    dt = time.perf_counter() - t0
    print(
        f"wrote {args.n} {args.kind} scans ({n_threat} with threats) of {size} to {args.out} "
        f"in {dt:.1f} s ({args.n / dt:.1f} scans/s)"
    )
    return 0
