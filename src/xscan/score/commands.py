"""``xscan score``: score folders of scans into a run directory (standard library at import)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score folders of scans: resumable, streaming, HTML report",
        description=(
            "Score image files and folders (jpg, png, bmp, tif; 8/16-bit; raw dual-energy "
            "<stem>_low/_high pairs) with an exported model. Writes RUN_DIR/results.jsonl "
            "(one line per input), summary.csv, coco_results.json, report.html and, with "
            "--overlays, drawings under overlays/. Run the same command again after an "
            "interruption to continue where it stopped."
        ),
    )
    p.add_argument(
        "model_and_inputs",
        nargs="+",
        metavar="[MODEL] INPUT",
        help="an .onnx model (omit it or write 'default' for the shipped default model), "
        "then files or folders to score",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--batch-size", type=int, default=8, help="images per inference batch")
    p.add_argument("--workers", type=int, default=2, help="decode worker threads")
    p.add_argument("--provider", default=None, help="execution provider (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--overlays", action="store_true", help="write drawn results to overlays/")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)"
    )
    p.add_argument("--ray-actors", type=int, default=0, help="Ray actors (default: CPUs / 2)")
    p.add_argument(
        "--threshold", type=float, default=None, help="alarm threshold (default: the model's)"
    )
    p.add_argument(
        "--max-pixels", type=int, default=None, help="refuse larger images (default 100M)"
    )
    p.add_argument(
        "--tiling",
        choices=("auto", "always", "never"),
        default="auto",
        help="cut scans much larger than the model input into tiles (auto: when fitting "
        "them whole would shrink them more than 2x)",
    )
    p.add_argument(
        "--decode-margin",
        type=float,
        default=0.0,
        metavar="M",
        help="decode large JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) while the "
        "result stays >= M x the size the scan takes in the network input, e.g. 2: faster on "
        "archives of large scans, inputs within a few 1e-3 on average but not identical; "
        "0 (default): always full resolution, the preprocessing of training and xscan eval",
    )
    p.add_argument("--coco-gt", default=None, help="COCO file whose image/category ids to use")
    p.add_argument("--restart", action="store_true", help="discard an existing run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def split_model_and_inputs(args: list[str]) -> tuple[str | None, list[str]]:
    """The first positional is the model when it is 'default' or ends with .onnx."""
    first = args[0]
    if first == "default" or first.lower().endswith(".onnx"):
        if len(args) < 2:
            raise ValueError("no INPUT given: name at least one file or folder to score")
        return first, args[1:]
    return None, args


def _run(args: argparse.Namespace) -> int:
    from xscan.imageio import DEFAULT_MAX_PIXELS
    from xscan.score.run import ScoreConfig, score

    model, inputs = split_model_and_inputs(args.model_and_inputs)
    cfg = ScoreConfig(
        model=model,
        inputs=inputs,
        out=args.out,
        batch_size=args.batch_size,
        workers=args.workers,
        provider=args.provider,
        threads=args.threads,
        overlays=args.overlays,
        engine=args.engine,
        threshold=args.threshold,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        tiling=args.tiling,
        restart=args.restart,
        coco_gt=args.coco_gt,
        progress=not args.no_progress,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        decode_margin=args.decode_margin,
    )
    res = score(cfg)
    s, sess = res.summary, res.session
    rate = sess.get("scored", 0) + sess.get("failed", 0)
    rate = rate / sess["wall_s"] if sess.get("wall_s") else 0.0
    print(
        f"scored {s.scored} / {s.total} inputs, {s.failed} failed, {s.alarms} alarms "
        f"({100 * s.alarm_rate:.1f}%); this session {rate:.1f} images/s; "
        f"report: {res.report}"
    )
    return 0
