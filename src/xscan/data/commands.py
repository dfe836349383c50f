"""``xscan data convert|stats|check|tip``. numpy/OpenCV-level imports only (no torch) at import."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Importing this module runs xscan/data/__init__.py, which loads the (torch-free) registry
# anyway: the reader kinds are listed there, once.
from xscan.data.registry import KINDS


def _add_common(p: argparse.ArgumentParser, fmt_flag: str = "--format") -> None:
    p.add_argument(
        fmt_flag, dest="format", choices=KINDS, help="dataset layout (detected when unambiguous)"
    )
    p.add_argument(
        "--split",
        help="split or subset to read (e.g. train, test, OL2, hidden; xray_real_dev: tip, heldout)",
    )
    p.add_argument(
        "--taxonomy",
        choices=("canonical", "native"),
        default="canonical",
        help="map class names to xscan's canonical classes or keep the dataset's",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="read, convert, describe and check datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("convert", help="convert a dataset to COCO or YOLO")
    p.add_argument("src", help="dataset folder or file")
    _add_common(p, "--from")
    p.add_argument("--to", required=True, choices=("coco", "yolo"))
    p.add_argument("dst", help="output folder")
    p.add_argument(
        "--images",
        choices=("copy", "link", "keep"),
        default="copy",
        help="copy images, hard-link them, or (COCO) reference them in place",
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser("stats", help="counts, box and image size histograms, PNG plots")
    p.add_argument("dataset")
    _add_common(p)
    p.add_argument("--out", help="folder for stats.json and PNG plots (default: none)")
    p.set_defaults(func=_stats)

    p = sub.add_parser("check", help="find missing/corrupt images, bad boxes, unknown classes")
    p.add_argument("dataset")
    _add_common(p)
    p.add_argument("--report", help="write every problem to this file (.json or text)")
    p.add_argument("--strict", action="store_true", help="warnings also fail the check")
    p.add_argument("--limit", type=int, default=200, help="problems printed (default 200)")
    p.set_defaults(func=_check)

    p = sub.add_parser(
        "tip",
        help="write threat-image-projection scans (rendered threats in benign scans) to a folder",
        description=(
            "Project rendered threats into benign scans and write them, shrunk to fit --size, "
            "as a folder that configs read with kind: xscan (DIR/images, DIR/annotations.json "
            "with boxes and RLE masks, DIR/manifest.json). Backgrounds: the benign scans of a "
            "dataset (--format, --split; e.g. --format xray_real_dev --split tip for half of "
            "the real dev set's benign scans, keeping the other half for --split heldout "
            "evaluation) or the images of a folder matching --pattern. The same arguments give "
            "the same files whatever --workers is."
        ),
    )
    p.add_argument("backgrounds", help="dataset or folder of benign scans")
    p.add_argument("--format", choices=KINDS, help="read backgrounds as this dataset layout")
    p.add_argument("--split", help="split of that dataset (xray_real_dev: tip)")
    p.add_argument("--pattern", default="*", help="file glob for a plain folder (e.g. 'N*.jpg')")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=100, help="number of scans (default: 100)")
    p.add_argument("--size", default="256x256", help="WIDTHxHEIGHT to fit (default: 256x256)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--count", default="1-3", help="threats per scan, LO-HI inclusive (default: 1-3)"
    )
    p.add_argument(
        "--threat-size",
        default="0.1-0.35",
        help="longest threat side over the shorter scan side, LO-HI (default: 0.1-0.35)",
    )
    p.add_argument(
        "--per-category", type=int, default=24, help="rendered threats per class (default: 24)"
    )
    p.add_argument(
        "--categories", help="comma-separated classes to render (default: every threat class)"
    )
    p.set_defaults(func=_tip)


def _range(text: str, flag: str, cast=float) -> list:
    try:
        lo, hi = (cast(v) for v in text.split("-", 1))
    except ValueError:
        raise ValueError(f"{flag}: expected LO-HI such as 1-3, got {text!r}") from None
    if lo > hi or lo < 0:
        raise ValueError(f"{flag}: expected 0 <= LO <= HI, got {text!r}")
    return [lo, hi]


def _tip(args: argparse.Namespace) -> int:
    import time

    from xscan.data.tip import benign_backgrounds
    from xscan.data.tip_dataset import write_tip_dataset
    from xscan.synth.commands import parse_size, tty_progress

    size_hw = parse_size(args.size)
    params = {
        "count": _range(args.count, "--count", int),
        "size": _range(args.threat_size, "--threat-size"),
    }
    cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
    bgs = benign_backgrounds(args.backgrounds, args.format, args.split, args.pattern)
    t0 = time.perf_counter()
    manifest = write_tip_dataset(
        args.out,
        bgs,
        args.n,
        size_hw,
        args.seed,
        args.workers,
        cats,
        args.per_category,
        params,
        progress=tty_progress,
    )
    n_threat = sum(1 for im in manifest["images"] if im["has_threat"])
    dt = time.perf_counter() - t0
    print(
        f"wrote {args.n} TIP scans ({n_threat} with threats) from {len(bgs)} benign "
        f"backgrounds to {args.out} in {dt:.1f} s ({args.n / dt:.1f} scans/s)"
    )
    return 0


def _load(args: argparse.Namespace, verify: bool = False):
    from xscan.data.registry import detect_format, load_dataset

    kind = args.format or detect_format(args.src if hasattr(args, "src") else args.dataset)
    path = args.src if hasattr(args, "src") else args.dataset
    print(f"reading {path} as {kind}", file=sys.stderr)
    return load_dataset(kind, path, split=args.split, taxonomy=args.taxonomy, verify=verify)


def _convert(args: argparse.Namespace) -> int:
    from xscan.data.writers import write_coco, write_yolo

    col = _load(args)
    for p in col.problems[:50]:
        print(p, file=sys.stderr)
    if args.to == "coco":
        out = write_coco(col, args.dst, images=args.images)
    else:
        out = write_yolo(col, args.dst, images="link" if args.images == "keep" else args.images)
    print(f"wrote {out}: {col.summary_line()}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from xscan.data.stats import compute_stats, format_table, write_stats

    col = _load(args)
    stats = compute_stats(col)
    print(format_table(stats))
    if args.out:
        for p in write_stats(stats, args.out):
            print(f"wrote {p}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from xscan.data.check import check_collection, format_report

    col = _load(args, verify=True)
    result = check_collection(col)
    print(format_report(result, args.limit))
    if args.report:
        path = Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(
                json.dumps(
                    {
                        "errors": result["errors"],
                        "warnings": result["warnings"],
                        "summary": result["summary"],
                        "problems": [p.__dict__ for p in result["problems"]],
                    },
                    indent=1,
                )
            )
        else:
            path.write_text(format_report(result) + "\n")
    failed = result["errors"] > 0 or (args.strict and result["warnings"] > 0)
    return 1 if failed else 0
