"""Tiny hand-built ONNX models with xscan metadata, for tests of the torch-free layers.

They follow the exported-model contract exactly (input ``images`` float32 (B, C, H, W) in
[0, 1]; detector outputs ``boxes`` (B, K, 4) xyxy input pixels, ``scores`` (B, K),
``classes`` (B, K) int64, ``num_dets`` (B,) int64; anomaly outputs ``anomaly_map``
(B, 1, h, w) and ``scores`` (B,)) but compute something trivial from the pixels: the darker
the image, the higher the score. Built with ``onnx.helper`` so no torch is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from xscan.spec import METADATA_KEY, ModelSpec, OperatingPoint


def toy_detector_spec(input_size=(64, 64), class_names=("knife", "firearm")) -> ModelSpec:
    return ModelSpec(
        task="detect",
        class_names=tuple(class_names),
        input_size=tuple(input_size),
        arch="toy",
        name="toy-detector",
        version="1",
        score_threshold=0.05,
        operating_points=(OperatingPoint(name="far5", threshold=0.5, target_far=0.05),),
        default_operating_point="far5",
    ).validate()


def _finish(graph, spec: ModelSpec, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_toy_detector(path: str | Path, spec: ModelSpec | None = None) -> Path:
    """Two detections per image: a box in the top-left quarter (class 0) scored by the
    darkness of the image, and one in the centre (class 1) at half that score."""
    spec = spec or toy_detector_spec()
    h, w = spec.input_size
    c = spec.in_channels
    k = 2
    boxes = np.array([[0.0, 0.0, w / 2, h / 2], [w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)[
        None
    ]
    inits = [
        numpy_helper.from_array(boxes, "box_tpl"),
        numpy_helper.from_array(np.array([1.0, 0.5], np.float32), "score_mult"),
        numpy_helper.from_array(np.array([[0, 1]], np.int64), "cls_tpl"),
        numpy_helper.from_array(np.array([k], np.int64), "k_tpl"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
        numpy_helper.from_array(np.array([1], np.int64), "one_i"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([k, 4], np.int64), "k4"),
        numpy_helper.from_array(np.array([k], np.int64), "kk"),
    ]
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero_i", "one_i"], ["bdim"]),
        helper.make_node("Concat", ["bdim", "k4"], ["box_shape"], axis=0),
        helper.make_node("Expand", ["box_tpl", "box_shape"], ["boxes"]),
        helper.make_node("Concat", ["bdim", "kk"], ["cls_shape"], axis=0),
        helper.make_node("Expand", ["cls_tpl", "cls_shape"], ["classes"]),
        helper.make_node("Expand", ["k_tpl", "bdim"], ["num_dets"]),
        helper.make_node("Sub", ["one", "images"], ["dark"]),
        helper.make_node("ReduceMean", ["dark"], ["mean_dark"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["mean_dark", "ax1"], ["md1"]),
        helper.make_node("Mul", ["md1", "score_mult"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c, h, w])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", k, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", k]),
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    return _finish(graph, spec, path)


def toy_anomaly_spec(input_size=(64, 64)) -> ModelSpec:
    return ModelSpec(
        task="anomaly",
        class_names=("anomaly",),
        input_size=tuple(input_size),
        arch="toy",
        name="toy-anomaly",
        score_normalization={"mean": 0.0, "std": 1.0},
        operating_points=(OperatingPoint(name="far5", threshold=0.5, target_far=0.05),),
        default_operating_point="far5",
    ).validate()


def make_toy_anomaly(path: str | Path, spec: ModelSpec | None = None) -> Path:
    """Anomaly map = darkness averaged over channels at 1/4 resolution; score = its max."""
    spec = spec or toy_anomaly_spec()
    h, w = spec.input_size
    c = spec.in_channels
    inits = [numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    nodes = [
        helper.make_node("Sub", ["one", "images"], ["dark"]),
        helper.make_node("ReduceMean", ["dark"], ["dark1"], axes=[1], keepdims=1),
        helper.make_node(
            "AveragePool", ["dark1"], ["anomaly_map"], kernel_shape=[4, 4], strides=[4, 4]
        ),
        helper.make_node("ReduceMax", ["anomaly_map"], ["scores"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_anomaly",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c, h, w])],
        [
            helper.make_tensor_value_info(
                "anomaly_map", TensorProto.FLOAT, ["batch", 1, h // 4, w // 4]
            ),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    return _finish(graph, spec, path)
