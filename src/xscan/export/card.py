"""Model cards next to an exported file: ``<stem>.card.md`` and ``<stem>.card.json``.

A card says what the model is (spec: classes, input, modality, normalisation, operating
points), how well it did (``spec.info`` metrics), what it was trained on (``spec.info`` data
summary), which exact bytes it describes (sha256) and how it was exported (settings, parity
numbers, INT8 gate numbers).
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xscan.runtime.metadata import file_sha256
from xscan.spec import ModelSpec


def training_summary(ckpt: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """What a checkpoint was trained on: the config's data sources and the training run's
    numbers from ``spec.info["training"]``."""
    data = (ckpt.get("config") or {}).get("data") or {}
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        sources = data.get(split) or []
        if sources:
            out[split] = [
                {k: v for k, v in src.items() if k in ("kind", "path", "split", "weight", "params")}
                for src in sources
            ]
    training = spec.info.get("training") or {}
    for key in ("images", "epochs", "best_epoch", "train_seconds"):
        if key in training:
            out[key] = training[key]
    if "config" in spec.info:
        out["config"] = spec.info["config"]
    return out


def card_paths(model_path: str | Path) -> tuple[Path, Path]:
    p = Path(model_path)
    return p.with_name(p.stem + ".card.md"), p.with_name(p.stem + ".card.json")


def _versions() -> dict[str, str]:
    import onnxruntime

    from xscan import __version__

    out = {
        "xscan": __version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }
    try:
        import onnx
        import torch

        out.update(torch=torch.__version__, onnx=onnx.__version__)
    except ImportError:
        pass
    return out


def build_card(
    model_path: str | Path,
    spec: ModelSpec,
    export: dict[str, Any],
    parity: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    path = Path(model_path)
    info = dict(spec.info)
    export = dict(export)
    summary = export.pop("training_data", None)
    if training_data is None:
        training_data = summary or info.get("data", info.get("training_data", {}))
    return {
        "model": path.name,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "metrics": info.get("metrics", {}),
        "training_data": training_data,
        "export": export,
        "parity": parity,
        "int8_gate": gate,
        "versions": _versions(),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, sort_keys=True)[:300] + "`"
    return str(v)


def _table(d: dict[str, Any]) -> list[str]:
    if not d:
        return ["(none recorded)", ""]
    return ["| key | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in d.items()], ""]


def render_markdown(card: dict[str, Any]) -> str:
    s = card["spec"]
    lines = [
        f"# Model card: {s['name']} {s['version']}",
        "",
        f"File `{card['model']}`, {card['size_bytes'] / 1e6:.2f} MB, sha256 `{card['sha256']}`; "
        f"exported {card['created_at']} ({card['export'].get('precision', 'fp32')}).",
        "",
        "## What it is",
        "",
        f"* task: **{s['task']}**, architecture `{s['arch']}` {_fmt(s['arch_params'])}",
        f"* classes ({len(s['class_names'])}): {', '.join(s['class_names'])}",
        f"* input: {s['input_size'][0]}x{s['input_size'][1]} (HxW), modality `{s['modality']}`, "
        f"{s['resize']} (pad {s['pad_value']}); images scaled to [0, 1] by the runtime",
        f"* normalisation inside the graph: mean {s['mean']}, std {s['std']}",
        f"* reported detections: score >= {s['score_threshold']}, at most {s['max_detections']}",
        *(
            [
                "* scan score (compared with the alarm threshold): the highest detection score"
                + (
                    f" of each of {s['scan_views']} mirrored/turned views of the input, "
                    "averaged; detections come from the views' merged heatmaps"
                    if s.get("scan_views", 1) > 1
                    else ""
                )
            ]
            if s["task"] == "detect"
            else []
        ),
        f"* weights sha256 `{s['weights_sha256']}`",
        "",
        "## Operating points",
        "",
        "| name | threshold | target FAR | FAR | detection rate | benign scans |",
        "|---|---|---|---|---|---|",
    ]
    for op in s["operating_points"]:
        mark = " (default)" if op["name"] == (s["default_operating_point"] or op["name"]) else ""
        lines.append(
            f"| {op['name']}{mark} | {op['threshold']:.4f} | {_fmt(op['target_far'])} | "
            f"{_fmt(op['far'])} | {_fmt(op['detection_rate'])} | {_fmt(op['n_benign'])} |"
        )
    if not s["operating_points"]:
        lines.append(f"| (none: alarms at score_threshold {s['score_threshold']}) | | | | | |")
    lines += [
        "",
        "## Metrics",
        "",
        "Recorded by training (`spec.info.metrics`, validation set):",
        "",
    ]
    lines += _table(card["metrics"])
    test = (s["info"].get("training") or {}).get("test")
    if isinstance(test, dict) and test:
        lines += ["Held-out test set, evaluated after training:", "", *_table(test)]
    lines += ["## Training data", ""]
    lines += _table(
        card["training_data"]
        if isinstance(card["training_data"], dict)
        else {"data": card["training_data"]}
    )
    lines += ["## Export", "", *_table(card["export"])]
    if card.get("parity"):
        p = card["parity"]
        lines += [
            "## Parity with PyTorch",
            "",
            f"{p['n_images']} generated scans; max abs error per output "
            f"{_fmt(p['max_abs_error'])} (tolerance rtol {p['rtol']}, atol {p['atol']}); "
            f"final detections torch {p['detections_torch']} / onnx {p['detections_onnx']}, "
            f"unmatched {p['unmatched']}, max box error {p['max_box_error']:.2e} px, "
            f"max score error {p['max_score_error']:.2e}.",
            "",
        ]
    if card.get("int8_gate"):
        g = card["int8_gate"]
        lines += [
            "## INT8 accuracy gate",
            "",
            f"AP50 FP32 {100 * g['ap50_fp32']:.2f} vs INT8 {100 * g['ap50_int8']:.2f}: drop "
            f"{100 * g['drop']:.2f} points (allowed {100 * g['max_drop']:.2f}); "
            f"{'passed' if g['passed'] else 'REFUSED'} on {g['n_images']} scans / "
            f"{g['n_objects']} objects ({g['data']}). Detection rate at the default operating "
            f"point FP32 {_fmt(g['detection_rate_fp32'])} vs INT8 "
            f"{_fmt(g['detection_rate_int8'])}; "
            f"false-alarm rate {_fmt(g['far_fp32'])} vs {_fmt(g['far_int8'])}.",
            "",
        ]
        b = g.get("bags")
        if b:
            lines += [
                f"Bag level on {b['n_threat']} threat / {b['n_benign']} benign scans "
                f"({b['data']}): detection rate at {100 * b['target_far']:g} % false alarms "
                f"(thresholds calibrated per model on these benign scans) FP32 "
                f"{100 * b['detection_rate_fp32']:.2f} vs "
                f"INT8 {100 * b['detection_rate_int8']:.2f}: drop {100 * b['drop']:.2f} points "
                f"(allowed {100 * b['max_drop']:.2f}); "
                f"{'passed' if b['passed'] else 'REFUSED'}. "
                f"AUROC FP32 {b['auroc_fp32']:.4f} vs INT8 {b['auroc_int8']:.4f}.",
                "",
            ]
    lines += ["## Versions", "", *_table(card["versions"])]
    skip = ("metrics", "data", "training_data")
    other = {k: v for k, v in s["info"].items() if k not in skip}
    if other:
        lines += ["## Provenance", "", *_table(other)]
    return "\n".join(lines).rstrip() + "\n"


def write_card(
    model_path: str | Path,
    spec: ModelSpec,
    export: dict[str, Any],
    parity: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.card.md`` and ``<stem>.card.json`` next to ``model_path``.

    ``training_data``: a summary of what the model was trained on (default:
    ``export["training_data"]``, else ``spec.info``'s ``data`` entry)."""
    card = build_card(model_path, spec, export, parity, gate, training_data)
    md, js = card_paths(model_path)
    js.write_text(json.dumps(card, indent=2, default=str) + "\n")
    md.write_text(render_markdown(card))
    return md, js
