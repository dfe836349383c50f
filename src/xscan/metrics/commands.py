"""``xscan eval CHECKPOINT_OR_ONNX DATASET [--format KIND] [--out DIR] [--calibrate]``.

Standard library only at import time.
"""

from __future__ import annotations

import argparse

from xscan.spec import SCAN_VIEWS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint or exported model on a dataset",
        description="COCO mAP/AP50 (overall and per class, and AP50 with every threat one "
        "class, which shows what class confusion costs) when the dataset has boxes, and "
        "where objects carry a conspicuity (generated scans) the same over the threats that "
        "show, those fainter than the clutter around them ignored; and "
        "bag-level alarm metrics (AUROC, detection rate at fixed false-alarm rates with "
        "thresholds calibrated on the dataset's benign scans, sliced by subset, occlusion "
        "level, threat class (over the scans holding a class, and over those holding only "
        "that class) and, where objects carry a conspicuity, by whether a scan's most "
        "conspicuous threat shows). Writes metrics.json and PR/ROC curves as PNG.",
    )
    p.add_argument("model", help="training checkpoint (.pt) or exported model (.onnx)")
    p.add_argument("dataset", help="dataset folder or file (any reader xscan data knows)")
    p.add_argument(
        "--format",
        default=None,
        metavar="KIND",
        help="dataset reader (default: detected from the layout)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="dataset split, where the format has them (xray_real_dev: heldout leaves out "
        "the benign scans of split tip, the TIP backgrounds of xscan data tip)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: runs/eval/<model stem>_<dataset name>)",
    )
    p.add_argument(
        "--far",
        type=float,
        action="append",
        default=None,
        metavar="RATE",
        help="false-alarm rate(s) to report (default: 0.01, 0.05, 0.10)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="DIR",
        help="anomaly models: also score reference mode, each scan against the earlier "
        "cleared scans of its vehicle in DIR/<scan stem>/",
    )
    p.add_argument(
        "--scan-views",
        type=int,
        choices=SCAN_VIEWS,
        default=None,
        metavar="N",
        help="detectors: score each scan over N views (1 as is; 2 also mirrored; 4 also "
        "upside down; 8 also turned by 90 degrees) instead of the model's spec.scan_views: "
        "the scan score is the mean of each view's highest score, and detections come from "
        "the views' merged heatmaps (an ONNX file exported with one view keeps the scan's "
        "own detections; one exported with views runs only its own count); with --calibrate "
        "it is written into the checkpoint with the thresholds",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0, help="data loader workers (checkpoints)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N scans only")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="write operating points calibrated on this dataset's benign scans "
        "into the checkpoint's spec (to a new file unless --in-place)",
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="with --calibrate: overwrite the checkpoint instead of writing "
        "<stem>.calibrated.pt beside it",
    )
    p.add_argument(
        "--default-far",
        type=float,
        default=0.05,
        help="with --calibrate: the default operating point's false-alarm rate",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xscan.metrics.evaluation import run_eval

    return run_eval(args)
