"""INT8 (static, QDQ, per-channel) and FP16 variants of an exported FP32 model.

INT8: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel, activations
uint8 and weights int8 (on this CPU family the fast combination; QOperator and dynamic
quantisation are slower than FP32), calibrated on real or generated scans read through
:mod:`xscan.imageio` and :func:`xscan.preprocess.prepare`. The decode tail (sigmoid, peak
finding, top-K, box gathering: every node after which no Conv/Gemm/MatMul follows) and the
head's output convolutions stay FP32, so logits, scores and boxes keep full precision. So
does the part of the network up to its last HardSwish / squeeze-excitation block (a
MobileNetV3 backbone): onnxruntime has no int8 kernels for those activations, and the
DequantizeLinear/QuantizeLinear pairs and layout transposes around them cost more than its
int8 depthwise and 1x1 convolutions save. So does the FPN's lateral path (its 1x1 inner
convolutions and the top-down resize-and-add): it reads the backbone's residual sums, signed
and long-tailed, whose 8-bit ranges are too coarse (on real SIXray scans quantising it cost
the shipped detector 1-4 points of detection rate at 5 % false alarms, keeping it in float
costs no speed; docs/benchmarks.md, "Runtime"). The FPN's 3x3 output convolution and the
head towers (dense 3x3 convolutions after ReLU, most of the FLOPs) are quantised. A network
without HardSwish-style activations is quantised whole but for the lateral path.

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
INT8_RECIPE = (
    "static QDQ, per-channel, activations uint8, weights int8, MinMax calibration; FP32: "
    "decode tail, head output convolutions, the network up to its last HardSwish/SE block, "
    "and the FPN's lateral path (inner 1x1 convolutions, top-down resize and add)"
)
METHOD_NAMES = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


def int8_recipe(method: str = "minmax") -> str:
    """:data:`INT8_RECIPE` with the calibration method used."""
    return INT8_RECIPE.replace("MinMax", METHOD_NAMES[method])


# Node-name prefixes of the FPN's lateral path in an exported CenterNet (torchvision's
# FeaturePyramidNetwork under the module name ``fpn``): the inner 1x1 convolutions and the
# top-down Resize/Add. Names come from the module tree, so they are stable across exports.
LATERAL_PREFIXES = ("/model/fpn/inner_blocks", "/model/fpn/Resize", "/model/fpn/Add")
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


def calibration_set(
    folders: list[str | Path] | str | Path, spec: ModelSpec, limit: int = 64, seed: int = 0
) -> list[np.ndarray]:
    """:func:`calibration_images` from one or more folders, ``limit`` images in all, shared
    evenly between them (e.g. synthetic scans and real-background scans: the ranges then
    cover both the training domain and the site's)."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    if not folders:
        raise ValueError("INT8 calibration needs at least one folder")
    images: list[np.ndarray] = []
    for i, folder in enumerate(folders):
        share = limit // len(folders) + (1 if i < limit % len(folders) else 0)
        images += calibration_images(folder, spec, limit=share, seed=seed)
    return images


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


# Operators with no int8 kernel in onnxruntime's CPU provider that MobileNetV3-style
# backbones use after almost every convolution (HardSwish, split by the pre-processing into
# HardSigmoid and Mul) and in their squeeze-excitation blocks (GlobalAveragePool, HardSigmoid,
# Mul). In a QDQ model each of them runs in float between a DequantizeLinear and a
# QuantizeLinear, and every switch between int8 (NHWC) and float (NCHWc) kernels adds layout
# transposes; profiled per node, this costs more than the int8 depthwise and 1x1
# convolutions of such a backbone save (docs/benchmarks.md, "Runtime").
_FLOAT_ONLY = {"HardSwish", "HardSigmoid", "GlobalAveragePool"}


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (``<op>_<index>``) so that it can be excluded
    from quantisation by name (the pre-processing's optimiser leaves the HardSigmoid and Mul
    it splits a HardSwish into unnamed)."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in taken:
                name += "_"
            n.name = name
            taken.add(name)


def float_body_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes up to the network's last float-only activation: every
    HardSwish/HardSigmoid/GlobalAveragePool, everything they depend on, and the Mul nodes
    that read them (``x * hardsigmoid(x)``, the SE gate). For a MobileNetV3 backbone this is
    the whole backbone (stem and input normalisation included), so INT8 covers the FPN and
    the head, whose dense 3x3 convolutions carry most of the FLOPs; a network without such
    activations (ResNet) gets an empty list and is quantised whole. Unnamed nodes are
    skipped; name them first (the quantiser does)."""
    nodes = model.graph.node
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    seeds = {i for i, n in enumerate(nodes) if n.op_type in _FLOAT_ONLY}
    if not seeds:
        return []
    body, stack = set(), list(seeds)
    while stack:
        i = stack.pop()
        if i in body:
            continue
        body.add(i)
        stack.extend(producer[name] for name in nodes[i].input if name in producer)
    seed_outputs = {out for i in seeds for out in nodes[i].output}
    body.update(
        i for i, n in enumerate(nodes) if n.op_type == "Mul" and seed_outputs & set(n.input)
    )
    return [nodes[i].name for i in sorted(body) if nodes[i].name]


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib: list[np.ndarray],
    keep_tail: bool = True,
    keep_body: bool = True,
    keep_lateral: bool = True,
    method: str = "minmax",
    float_prefixes: tuple[str, ...] = (),
) -> Path:
    """Static QDQ INT8 (per-channel, uint8 activations / int8 weights) of ``fp32_path``,
    calibrated on ``calib`` images (``method``: ``minmax``, the default, ``percentile`` or
    ``entropy``). FP32 stay: the decode tail and the head's output convolutions
    (``keep_tail``, :func:`tail_nodes`), the part of the network up to its last
    HardSwish/squeeze-excitation (``keep_body``, :func:`float_body_nodes`), which runs slower
    in int8 than in FP32 on the CPU, and the FPN's lateral path (``keep_lateral``,
    :data:`LATERAL_PREFIXES`), and any node whose name starts with one of
    ``float_prefixes`` (for sensitivity studies: ``benchmarks/bench_int8_variants.py``).
    The spec metadata is carried over."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHOD_NAMES:
        raise ValueError(
            f"INT8 calibration method: expected one of {list(METHOD_NAMES)}, got {method!r}"
        )
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    spec = get_spec(model, str(fp32_path))
    if not calib:
        raise ValueError("INT8 calibration needs at least one image")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
            pre_model = onnx.load(str(pre))
        except Exception as e:  # pre-processing is an optimisation; quantise the original
            log.warning("quantisation pre-processing failed (%s); using the model as is", e)
            pre_model = model
        _name_nodes(pre_model)
        onnx.save(pre_model, str(pre))
        exclude = set(tail_nodes(pre_model)) if keep_tail else set()
        if keep_body:
            exclude.update(float_body_nodes(pre_model))
        prefixes = tuple(float_prefixes) + (LATERAL_PREFIXES if keep_lateral else ())
        if prefixes:
            exclude.update(n.name for n in pre_model.graph.node if n.name.startswith(prefixes))
        quantize_static(
            str(pre),
            str(out_path),
            _Reader(calib, spec),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHOD_NAMES[method]),
            nodes_to_exclude=sorted(exclude),
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
