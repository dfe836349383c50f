"""``xscan export`` (standard library only at import time)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("xscan.export")

EXIT_GATE = 3  # the parity or INT8 accuracy gate refused the export


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (FP32, FP16, INT8) with its model card",
        description="Export a training checkpoint to ONNX. Image size, classes, modality, "
        "normalisation and thresholds come from the checkpoint's spec; the file carries them "
        "in its metadata. Every export passes a PyTorch-vs-onnxruntime parity gate; an INT8 "
        "twin is written only if it passes the accuracy gate (AP50 on boxed scans and, with "
        "--gate-bags, the detection rate at the default false-alarm rate on image-level "
        "labelled scans). Exit status 3 when a gate refuses. See docs/export.md.",
    )
    p.add_argument("checkpoint", help="training checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output .onnx file (FP32)")
    p.add_argument("--fp16", action="store_true", help="also write OUT.fp16.onnx (for GPUs)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write OUT.int8.onnx (static QDQ; a HardSwish/SE backbone and the FPN's "
        "lateral path stay FP32), if it passes the accuracy gate",
    )
    p.add_argument(
        "--calib",
        metavar="DIR",
        action="append",
        help="calibration images for --int8; repeat to mix folders (e.g. synthetic scans "
        "and threat-image-projection scans on real backgrounds), shared evenly",
    )
    p.add_argument("--calib-count", type=int, default=64, help="calibration images used")
    p.add_argument(
        "--calib-method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="activation range calibration for --int8 (default minmax)",
    )
    p.add_argument(
        "--gate-data",
        metavar="DIR",
        help="labelled xscan synth folder for the INT8 AP50 gate (default: the checkpoint "
        "config's test/val folder if present, else scans generated with a fixed seed)",
    )
    p.add_argument("--gate-count", type=int, default=200, help="scans used by the AP50 gate")
    p.add_argument(
        "--gate-bags",
        metavar="DATASET",
        help="also gate INT8 on the bag-level detection rate at the default operating point's "
        "false-alarm rate, on a dataset with image-level labels (any format xscan data reads, "
        "e.g. a site's own threat and benign scans); thresholds are calibrated per model on "
        "its benign scans",
    )
    p.add_argument("--gate-bags-format", metavar="KIND", help="reader for --gate-bags")
    p.add_argument("--gate-bags-split", metavar="SPLIT", help="split of --gate-bags")
    p.add_argument("--gate-bags-count", type=int, default=None, help="scans of --gate-bags")
    p.add_argument(
        "--max-ap50-drop",
        "--max-drop",
        dest="max_ap50_drop",
        type=float,
        default=None,
        help="allowed loss of INT8 in AP50 and in the bag-level detection rate, as a fraction "
        "(default: the checkpoint config's export.int8_max_ap50_drop, else 0.01 = 1 point)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--parity-images", type=int, default=8, help="generated scans for parity")
    p.set_defaults(func=_export)


def twin_path(out: Path, precision: str) -> Path:
    """``model.onnx`` -> ``model.<precision>.onnx``."""
    return out.with_name(f"{out.stem}.{precision}{out.suffix or '.onnx'}")


def _export(args: argparse.Namespace) -> int:
    from xscan.export.gate import GateError
    from xscan.export.parity import ParityError

    if args.int8 and not args.calib:
        raise ValueError("--int8 needs --calib DIR (images to calibrate activation ranges on)")
    try:
        return _run(args)
    except (ParityError, GateError) as e:
        print(f"xscan export: REFUSED: {e}", file=sys.stderr)
        return EXIT_GATE


def _run(args: argparse.Namespace) -> int:
    from xscan.export.card import training_summary, write_card
    from xscan.export.onnx_export import DEFAULT_OPSET, export_module, load_for_export

    out = Path(args.out)
    module, spec, ckpt = load_for_export(args.checkpoint)
    export_cfg = (ckpt.get("config") or {}).get("export") or {}
    opset = args.opset or int(export_cfg.get("opset", DEFAULT_OPSET))
    slim = not args.no_simplify and bool(export_cfg.get("simplify", True))
    result = export_module(module, spec, out, opset, slim, args.parity_images)
    settings = {**result.settings, "checkpoint": str(args.checkpoint)}
    settings["training_data"] = training_summary(ckpt, spec)
    parity = result.parity.to_dict() if result.parity else None
    md, _ = write_card(out, spec, settings, parity)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), card {md}")
    print(f"  parity: {result.parity.summary()}")
    if args.fp16:
        _fp16(out, spec, settings, module, args)
    if args.int8:
        max_drop = args.max_ap50_drop
        if max_drop is None:
            max_drop = float(export_cfg.get("int8_max_ap50_drop", 0.01))
        args.gate_data, size_hw = _gate_source(ckpt, args.gate_data)
        _int8(out, spec, settings, args, max_drop, size_hw)
    return 0


def _fp16(out: Path, spec, settings: dict, module, args: argparse.Namespace) -> None:
    from xscan.export.card import write_card
    from xscan.export.onnx_export import run_onnx, run_torch
    from xscan.export.parity import (
        ParityError,
        detection_agreement,
        prepared_batch,
        synthetic_scans,
    )
    from xscan.export.quantize import convert_fp16

    path = convert_fp16(out, twin_path(out, "fp16"))
    # FP16 keeps ~3 significant digits, so element-wise FP32 tolerances do not apply: the
    # gate is that >= 98 % of detections agree (class, IoU >= 0.9, score within 0.02).
    batch = prepared_batch(spec, synthetic_scans(spec, args.parity_images, 1))
    agree, n = detection_agreement(spec, run_torch(module, spec, batch), run_onnx(path, batch))
    if agree < 0.98:
        path.unlink(missing_ok=True)
        raise ParityError(
            f"{path}: FP16 model agrees with PyTorch on only {100 * agree:.1f} % of {n} "
            "detections (class, IoU >= 0.9, score within 0.02; need 98 %)"
        )
    report = {"fp16_detection_agreement": agree, "detections_compared": n}
    md, _ = write_card(path, spec, {**settings, "precision": "fp16", **report})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), card {md}")
    print(f"  fp16: {100 * agree:.1f} % of {n} detections agree with PyTorch")


def _gate_source(ckpt: dict, gate_data: str | None) -> tuple[str | None, tuple[int, int] | None]:
    """Where the INT8 gate measures AP50: ``--gate-data``; else the checkpoint config's
    held-out ``xscan`` folder (test, then val) when it exists; else ``None`` (generated scans,
    of the size that folder's manifest or the config's synth source names, if any)."""
    if gate_data:
        return gate_data, None
    data = (ckpt.get("config") or {}).get("data") or {}
    size: tuple[int, int] | None = None
    for source in [*data.get("test", []), *data.get("val", [])]:
        path = Path(str(source.get("path") or ""))
        if source.get("kind") == "xscan" and (path / "annotations.json").is_file():
            return str(path), None
        if source.get("kind") == "xscan" and size is None:
            size = _manifest_size(path)
        params = source.get("params") or {}
        if source.get("kind") == "synth" and size is None and params.get("size"):
            size = _parse_size(params["size"])
    return None, size


def _parse_size(value) -> tuple[int, int] | None:
    if isinstance(value, str) and "x" in value.lower():
        w, h = (int(v) for v in value.lower().split("x"))
        return h, w
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _manifest_size(folder: Path) -> tuple[int, int] | None:
    import json

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return _parse_size((manifest.get("arguments") or {}).get("size"))


def _int8(out: Path, spec, settings: dict, args, max_drop: float, size_hw) -> None:
    from xscan.export.card import card_paths, write_card
    from xscan.export.gate import GateError, int8_gate
    from xscan.export.quantize import calibration_set, int8_recipe, quantize_int8

    path = twin_path(out, "int8")
    folders = list(args.calib)
    calib = calibration_set(folders, spec, limit=args.calib_count)
    quantize_int8(out, path, calib, method=args.calib_method)
    try:
        gate = int8_gate(
            out,
            path,
            max_drop,
            data=args.gate_data,
            size_hw=size_hw,
            limit=args.gate_count,
            bags=args.gate_bags,
            bags_format=args.gate_bags_format,
            bags_split=args.gate_bags_split,
            bags_limit=args.gate_bags_count,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if not gate.passed:
        path.unlink(missing_ok=True)
        for stale in card_paths(path):
            stale.unlink(missing_ok=True)
        raise GateError(f"INT8 model not written: {gate.summary()}")
    int8_settings = {
        **settings,
        "precision": "int8",
        "quantization": int8_recipe(args.calib_method),
        "calibration": f"{len(calib)} images from {', '.join(folders)}",
    }
    md, _ = write_card(path, spec, int8_settings, None, gate.to_dict())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), card {md}")
    print(f"  int8 gate passed: {gate.summary()}")
