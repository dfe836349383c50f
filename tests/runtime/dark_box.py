"""Hand-built ONNX detectors whose detections tests can place exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from xscan.spec import METADATA_KEY, ModelSpec, OperatingPoint


def dark_box_spec(input_size=(64, 64)) -> ModelSpec:
    return ModelSpec(
        task="detect",
        class_names=("knife",),
        input_size=tuple(input_size),
        arch="dark-box",
        score_threshold=0.1,
        tile_overlap=0.25,
        operating_points=(OperatingPoint(name="far5", threshold=0.5, target_far=0.05),),
        default_operating_point="far5",
    ).validate()


def make_dark_box_detector(path: Path, spec: ModelSpec, ramp: bool = False) -> Path:
    """A detector that boxes the dark pixels (mean < 0.5) of its input: one detection of
    class 0, score 0.9, when any pixel is dark. Lets tests place objects exactly.
    ``ramp=True``: the score is 0.9 times the largest of ``(1 + x + 2 y) / (1 + w + 2 h)``
    over the dark pixels instead, so it changes when the input is mirrored or turned."""
    h, w = spec.input_size
    c = spec.in_channels
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.9, np.float32), "p"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.arange(w, dtype=np.float32), "xs"),
        numpy_helper.from_array(np.arange(h, dtype=np.float32), "ys"),
        numpy_helper.from_array(np.array(1e6, np.float32), "big"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(
            ((1 + np.arange(w)[None] + 2 * np.arange(h)[:, None]) / (1 + w + 2 * h)).astype(
                np.float32
            ),
            "ramp",
        ),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["gray"], axes=[1], keepdims=0),
        helper.make_node("Less", ["gray", "half"], ["dark_b"]),
        helper.make_node("Cast", ["dark_b"], ["dark"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["dark"], ["col"], axes=[1], keepdims=0),  # (B, W)
        helper.make_node("ReduceMax", ["dark"], ["row"], axes=[2], keepdims=0),  # (B, H)
    ]
    for name, prof, idx in (("x", "col", "xs"), ("y", "row", "ys")):
        nodes += [
            helper.make_node("Sub", ["one", prof], [f"{name}_not"]),
            helper.make_node("Mul", [f"{name}_not", "big"], [f"{name}_pen"]),
            helper.make_node("Add", [idx, f"{name}_pen"], [f"{name}_lo_c"]),
            helper.make_node("ReduceMin", [f"{name}_lo_c"], [f"{name}0"], axes=[1], keepdims=1),
            helper.make_node("Add", [idx, "one"], [f"{name}_hi_i"]),
            helper.make_node("Mul", [f"{name}_hi_i", prof], [f"{name}_hi_c"]),
            helper.make_node("ReduceMax", [f"{name}_hi_c"], [f"{name}1"], axes=[1], keepdims=1),
        ]
    nodes += [
        helper.make_node("Concat", ["x0", "y0", "x1", "y1"], ["b4"], axis=1),
        helper.make_node("Unsqueeze", ["b4", "ax1"], ["boxes"]),
        helper.make_node("ReduceMax", ["col"], ["any"], axes=[1], keepdims=1),
    ]
    if ramp:
        nodes += [
            helper.make_node("Mul", ["dark", "ramp"], ["dark_w"]),
            helper.make_node("ReduceMax", ["dark_w"], ["peak"], axes=[1, 2], keepdims=0),
            helper.make_node("Unsqueeze", ["peak", "ax1"], ["peak1"]),
            helper.make_node("Mul", ["peak1", "p"], ["scores"]),
        ]
    else:
        nodes.append(helper.make_node("Mul", ["any", "p"], ["scores"]))
    nodes += [
        helper.make_node("Mul", ["any", "zero"], ["cls_f"]),
        helper.make_node("Cast", ["cls_f"], ["classes"], to=TensorProto.INT64),
        helper.make_node("ReduceMax", ["col"], ["any0"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["any0"], ["num_dets"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "dark_box",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c, h, w])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
