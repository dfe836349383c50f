"""``xscan info`` and ``xscan predict`` (standard library only at import time)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print an exported model's spec",
        description="Print the spec stored in an exported model: classes, input size, "
        "modality, normalisation, operating points, provenance and the file's sha256.",
    )
    p.add_argument("model", help="exported .onnx model")
    p.add_argument("--json", action="store_true", help="print the spec as JSON")
    p.set_defaults(func=_info)

    p = subparsers.add_parser(
        "predict",
        help="run an exported model on images",
        description="Run an exported model on images and print what it finds. For raw "
        "dual-energy models give each scan as LOW,HIGH (two 16-bit transmission images).",
    )
    p.add_argument("model", help="exported .onnx model")
    p.add_argument("images", nargs="+", help="image files (LOW,HIGH pairs for raw_dual models)")
    p.add_argument("--threshold", type=float, default=None, help="alarm threshold override")
    p.add_argument("--save-overlay", metavar="DIR", default=None, help="write drawn images here")
    p.add_argument("--provider", default="cpu", help="cpu, cuda, tensorrt, openvino (or full)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument(
        "--tiling",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: tile scans that would shrink more than 2x to fit the input",
    )
    p.add_argument(
        "--tile-scale",
        type=float,
        default=1.0,
        help="tile window as a multiple of the input size (default 1: native pixels)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.set_defaults(func=_predict)


def _fmt_spec(spec, sha256: str, path: str) -> str:
    lines = [
        f"model          {path}",
        f"name           {spec.name} (version {spec.version}, arch {spec.arch})",
        f"task           {spec.task}",
        f"classes        {', '.join(spec.class_names)} ({spec.num_classes})",
        f"input size     {spec.input_size[0]}x{spec.input_size[1]} (HxW), {spec.resize}, "
        f"pad {spec.pad_value}",
        f"modality       {spec.modality} ({spec.in_channels} channel(s))",
        f"normalisation  mean {list(spec.mean)} std {list(spec.std)} (inside the graph)",
        f"detections     score >= {spec.score_threshold}, NMS IoU {spec.nms_iou}, "
        f"at most {spec.max_detections}",
    ]
    if spec.score_normalization:
        lines.append(f"score norm     {spec.score_normalization}")
    loc = spec.location_normalization
    if loc:
        how = loc.get("score", "max")
        if how == "top_fraction":
            how = f"mean of the top {100 * float(loc['top_fraction']):g} % of pixels"
        lines.append(
            f"location norm  {loc['grid'][0]}x{loc['grid'][1]} grid (rows x cols, normalised "
            f"scan coordinates) from {loc.get('scans', '?')} benign scans; score: {how}"
        )
    elif spec.task == "anomaly":
        how = {"tile_max": "maximum tile score", "map_max": "maximum of the stitched map"}
        lines.append(f"scan score     {how.get(spec.scan_score, spec.scan_score)}")
    elif spec.task == "detect":
        lines.append(
            "scan score     highest detection score"
            + (
                f" of each of {spec.scan_views} views, averaged (detections: views merged)"
                if spec.scan_views > 1
                else ""
            )
        )
    lines.append(f"alarm at       {spec.alarm_threshold} (default operating point)")
    for op in spec.operating_points:
        mark = "*" if spec.operating_point and op.name == spec.operating_point.name else " "
        extra = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("target FAR", op.target_far),
                ("FAR", op.far),
                ("detection rate", op.detection_rate),
                ("benign scans", op.n_benign),
            )
            if v is not None
        )
        lines.append(f"  {mark} {op.name:<12} threshold {op.threshold:.4f}  {extra}")
    lines.append(
        f"tiling         when fitting whole shrinks > {spec.tile_max_downscale:g}x; "
        f"overlap {spec.tile_overlap}"
    )
    lines.append(f"file sha256    {sha256}")
    lines.append(f"weights sha256 {spec.weights_sha256 or '-'}")
    for key, value in sorted(spec.info.items()):
        text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
        lines.append(f"info.{key:<9} {text if len(text) < 200 else text[:197] + '...'}")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from xscan.runtime.metadata import file_sha256, read_spec

    spec = read_spec(args.model)
    sha = file_sha256(args.model)
    if args.json:
        print(
            json.dumps({"path": str(args.model), "sha256": sha, "spec": spec.to_dict()}, indent=2)
        )
    else:
        print(_fmt_spec(spec, sha, str(args.model)))
    return 0


def _read(arg: str, modality: str):
    from xscan.imageio import read_image, read_raw_pair

    if modality == "raw_dual":
        if "," not in arg:
            raise ValueError(f"{arg}: a raw_dual model needs LOW,HIGH image pairs")
        low, high = arg.split(",", 1)
        return read_raw_pair(low, high)
    return read_image(arg)


def _predict(args: argparse.Namespace) -> int:
    from xscan.runtime import load_model

    model = load_model(
        args.model, providers=args.provider, threads=args.threads, tile_scale=args.tile_scale
    )
    out_dir = Path(args.save_overlay) if args.save_overlay else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for arg in args.images:
        image = _read(arg, model.spec.modality)
        pred = model.predict(image, threshold=args.threshold, tiling=args.tiling)
        record = {"image": arg, **pred.to_dict()}
        if out_dir is not None:
            record["overlay"] = str(_save_overlay(out_dir, arg, image, pred))
        if args.json:
            print(json.dumps(record))
            continue
        state = "ALARM" if pred.alarm else "clear"
        print(
            f"{arg}: {state} image_score {pred.image_score:.4f} (threshold {pred.threshold:.4f}), "
            f"{pred.num_detections} detection(s), {pred.tiles} tile(s)"
        )
        for d in record["detections"]:
            print(f"  {d['label']:<16} {d['score']:.3f}  box {d['box']}")
    sys.stdout.flush()
    return 0


def _save_overlay(out_dir: Path, arg: str, image, pred) -> Path:
    import cv2

    from xscan.runtime.overlay import draw_prediction

    path = out_dir / (Path(arg.split(",")[0]).stem + ".overlay.png")
    if not cv2.imwrite(str(path), draw_prediction(image, pred)):
        raise ValueError(f"{path}: could not write the overlay image")
    return path
