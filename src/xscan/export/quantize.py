"""INT8 (static, QDQ, per-channel) and FP16 variants of an exported FP32 model.

INT8: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel, activations
uint8 and weights int8 (on this CPU family the fast combination; QOperator and dynamic
quantisation are slower than FP32), calibrated on real or generated scans read through
:mod:`xscan.imageio` and :func:`xscan.preprocess.prepare`. The decode tail (sigmoid, peak
finding, top-K, box gathering: every node after which no Conv/Gemm/MatMul follows) and the
head's output convolutions stay FP32, so the network body is quantised while logits,
scores and boxes keep full precision.

FP16 (for GPUs): ``onnxruntime.transformers.float16.convert_float_to_float16`` with FP32 IO
(``keep_io_types``) and the same tail kept in FP32.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from xscan.export.metadata import get_spec, set_spec
from xscan.imageio import IMAGE_SUFFIXES, read_image, read_raw_pair
from xscan.preprocess import prepare
from xscan.spec import ModelSpec

log = logging.getLogger(__name__)

PRECISION_KEY = "xscan.precision"
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to keep in floating point: the decode/post-processing tail (nodes
    from which no weight layer is reachable) and the last weight layers that feed only that
    tail (the head's output convolutions: quantising their outputs would put 8-bit steps
    into the logits and create ties between neighbouring heatmap peaks)."""
    nodes = model.graph.node
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}
    feeds_weights = [False] * len(nodes)
    # Nodes are topologically sorted in a valid ONNX graph: walk backwards.
    for i in range(len(nodes) - 1, -1, -1):
        below = [j for out in nodes[i].output for j in consumers.get(out, ())]
        feeds_weights[i] = any(nodes[j].op_type in _WEIGHT_OPS or feeds_weights[j] for j in below)
    tail = {i for i, n in enumerate(nodes) if not feeds_weights[i] and n.op_type not in _WEIGHT_OPS}
    last_weights = {
        i
        for i, n in enumerate(nodes)
        if n.op_type in _WEIGHT_OPS
        and all(
            j in tail
            for out in n.output
            for j in consumers.get(out, ())
            if out not in graph_outputs
        )
    }
    return [nodes[i].name for i in sorted(tail | last_weights) if nodes[i].name]


# ----------------------------------------------------------------- calibration data


def _synth_pairs(folder: Path) -> list[tuple[Path, Path]]:
    ann = folder / "annotations.json"
    if not ann.is_file():
        return []
    data = json.loads(ann.read_text())
    return [
        (folder / im["raw_low"], folder / im["raw_high"])
        for im in data.get("images", [])
        if im.get("raw_low") and im.get("raw_high")
    ]


def calibration_images(
    folder: str | Path, spec: ModelSpec, limit: int = 64, seed: int = 0
) -> list[np.ndarray]:
    """Up to ``limit`` images from ``folder`` (recursive; a seeded sample when there are more),
    read as the runtime reads them. Raw dual-energy models need an ``xscan synth`` folder
    (``annotations.json`` with ``raw_low``/``raw_high``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: calibration folder not found")
    rng = np.random.default_rng(seed)
    if spec.modality == "raw_dual":
        pairs = _synth_pairs(folder)
        if not pairs:
            raise ValueError(
                f"{folder}: a raw_dual model calibrates on raw pairs; expected an xscan synth "
                "folder with annotations.json listing raw_low/raw_high"
            )
        pick = sorted(rng.choice(len(pairs), min(limit, len(pairs)), replace=False))
        return [read_raw_pair(*pairs[i]) for i in pick]
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if spec.modality == "false_color":
        files = [p for p in files if p.parent.name != "raw"]  # synth folders: skip raw/ pairs
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) for calibration")
    pick = sorted(rng.choice(len(files), min(limit, len(files)), replace=False))
    return [read_image(files[i]) for i in pick]


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over prepared images, batch 1."""

    def __init__(self, images: list[np.ndarray], spec: ModelSpec):
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {"images": prepare(im, spec)[0][None]} for im in images
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calib: list[np.ndarray], keep_tail: bool = True
) -> Path:
    """Static QDQ INT8 (per-channel, uint8 activations / int8 weights) of ``fp32_path``,
    calibrated (MinMax) on ``calib`` images. The spec metadata is carried over."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    spec = get_spec(model, str(fp32_path))
    if not calib:
        raise ValueError("INT8 calibration needs at least one image")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        except Exception as e:  # pre-processing is an optimisation; quantise the original
            log.warning("quantisation pre-processing failed (%s); using the model as is", e)
            pre = fp32_path
        exclude = tail_nodes(onnx.load(str(pre))) if keep_tail else []
        quantize_static(
            str(pre),
            str(out_path),
            _Reader(calib, spec),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    q = onnx.load(str(out_path))
    set_spec(q, spec, extra={PRECISION_KEY: "int8"})
    onnx.save(q, str(out_path))
    return out_path


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name!r}")
        for n in done:
            ordered.append(n)
            ready.update(n.output)
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """FP16 weights and compute with FP32 inputs/outputs; the decode tail stays FP32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    spec = get_spec(model, str(fp32_path))
    half = convert_float_to_float16(
        model, keep_io_types=True, node_block_list=tail_nodes(model), disable_shape_infer=False
    )
    _toposort(half.graph)  # the converter appends its input casts at the end of the list
    set_spec(half, spec, extra={PRECISION_KEY: "fp16"})
    onnx.checker.check_model(half)
    out_path = Path(out_path)
    onnx.save(half, str(out_path))
    return out_path
