"""``xscan train CONFIG [--set key=value ...] [--resume PATH] [--out DIR]``.

Standard library only at import time.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from an experiment config",
        description="Train a detector (model.task: detect) or an anomaly model "
        "(model.task: anomaly) from a YAML experiment config. Multi-GPU: "
        "torchrun --nproc_per_node N scripts/train.py CONFIG.",
    )
    p.add_argument("config", help="experiment config (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue an interrupted run from its last.pt",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (train.out_dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from xscan.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.out:
        cfg.train.out_dir = args.out
    if cfg.model.task == "anomaly":
        from xscan.train import anomaly

        anomaly.main(cfg)
        return 0
    from xscan.train.engine import NonFiniteLossError
    from xscan.train.main import main

    try:
        result = main(cfg, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"xscan train: stopped: {e}", file=sys.stderr)
        return 1
    if result:
        print(f"run folder: {cfg.train.out_dir}")
        for key in ("images_per_s", "data_wait_share"):
            print(f"{key}: {result[key]:.3f}")
        for split in ("val", "test"):
            for key, value in (result.get(split) or {}).items():
                print(f"{split} {key}: {value:.4f}")
    return 0
