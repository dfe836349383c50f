from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest

from xscan.export.commands import _int8, twin_path
from xscan.export.gate import (
    GateError,
    image_scores,
    int8_gate,
    load_bags,
    load_labelled,
    within,
)
from xscan.export.quantize import (
    PRECISION_KEY,
    calibration_images,
    calibration_set,
    float_body_nodes,
    quantize_int8,
    tail_nodes,
)
from xscan.metrics.alarm import auroc
from xscan.runtime import load_model


@pytest.fixture(scope="module")
def int8_path(tiny_export, labelled_folder, tmp_path_factory):
    calib = calibration_images(labelled_folder, tiny_export.spec, limit=8)
    return quantize_int8(tiny_export.path, tmp_path_factory.mktemp("q") / "tiny.int8.onnx", calib)


def test_int8_graph_is_qdq_with_a_float_decode_tail(tiny_export, int8_path):
    m = onnx.load(str(int8_path))
    ops = [n.op_type for n in m.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "QLinearConv" not in ops  # QDQ format, not QOperator
    produced_by_dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    decode_ops = {"Sigmoid", "MaxPool", "TopK", "GatherElements", "Softplus"}
    decode = [n for n in m.graph.node if n.op_type in decode_ops]
    assert {n.op_type for n in decode} >= {"Sigmoid", "TopK", "GatherElements"}
    for n in decode:  # logits, scores and boxes are never 8-bit
        assert not produced_by_dq & set(n.input), f"{n.name} reads quantised data"
    assert set(tail_nodes(onnx.load(str(tiny_export.path)))) >= {
        n.name for n in onnx.load(str(tiny_export.path)).graph.node if n.op_type == "TopK"
    }
    props = {p.key: p.value for p in m.metadata_props}
    assert props[PRECISION_KEY] == "int8"
    assert load_model(int8_path).spec == load_model(tiny_export.path).spec


def _quantised_weight_convs(m: onnx.ModelProto) -> dict[str, bool]:
    """Conv name -> whether its weight arrives through a DequantizeLinear (int8 weights)."""
    from_dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: n.input[1] in from_dq for n in m.graph.node if n.op_type == "Conv"}


def test_int8_keeps_backbone_and_fpn_laterals_fp32_and_quantises_the_rest(int8_path):
    m = onnx.load(str(int8_path))
    convs = _quantised_weight_convs(m)
    backbone = {k: v for k, v in convs.items() if "/backbone/" in k}
    lateral = {k: v for k, v in convs.items() if "/fpn/inner_blocks" in k}
    fpn_head = {
        k: v
        for k, v in convs.items()
        if "/fpn/layer_blocks" in k or "_tower" in k  # not the output convs
    }
    assert backbone and not any(backbone.values()), "backbone convolutions must stay FP32"
    assert len(lateral) == 3 and not any(lateral.values()), "FPN lateral 1x1 convs stay FP32"
    assert fpn_head and all(fpn_head.values()), "FPN output and head-tower convs are int8"
    # the top-down path (resize, add) runs in float: none of it reads a DequantizeLinear
    from_dq_out = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    top_down = [
        n for n in m.graph.node if n.name.startswith(("/model/fpn/Resize", "/model/fpn/Add"))
    ]
    assert top_down and not any(from_dq_out & set(n.input) for n in top_down)
    outputs = {k: v for k, v in convs.items() if "/heatmap/" in k or "/ltrb/" in k}
    assert len(outputs) == 2 and not any(outputs.values()), "head output convolutions stay FP32"
    # no float-only activation sits between a DequantizeLinear and a QuantizeLinear
    from_dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for n in m.graph.node:
        if n.op_type in {"HardSwish", "HardSigmoid", "GlobalAveragePool"}:
            assert not from_dq & set(n.input), f"{n.op_type} {n.name} reads quantised data"


def _tiny_graph(act: str) -> onnx.ModelProto:
    """conv -> act -> conv -> relu -> conv (a stand-in for backbone -> neck -> head)."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, x = [], [], "x"
    for i, op in enumerate((act, "Relu", None)):
        inits.append(numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), f"w{i}"))
        conv = helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1] * 4)
        nodes.append(conv)
        x = f"c{i}"
        if op:
            nodes.append(helper.make_node(op, [x], [f"a{i}"], name=f"{op.lower()}{i}"))
            x = f"a{i}"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", x)]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float_body_is_everything_up_to_the_last_hardswish():
    assert float_body_nodes(_tiny_graph("HardSwish")) == ["conv0", "hardswish0"]
    assert float_body_nodes(_tiny_graph("Relu")) == []  # ResNet-style: quantised whole


def test_gate_decides_by_the_measured_drop(tiny_export, int8_path, labelled_folder):
    report = int8_gate(tiny_export.path, int8_path, max_drop=1.0, data=labelled_folder)
    assert report.ap50_fp32 == pytest.approx(1.0)  # labels are the FP32 model's detections
    assert report.drop == pytest.approx(report.ap50_fp32 - report.ap50_int8)
    assert report.n_objects == sum(
        len(s.labels) for s in load_labelled(labelled_folder, tiny_export.spec)
    )
    above = int8_gate(tiny_export.path, int8_path, report.drop + 1e-3, data=labelled_folder)
    below = int8_gate(tiny_export.path, int8_path, report.drop - 1e-3, data=labelled_folder)
    assert above.passed and not below.passed
    assert "AP50 fp32 100.00" in below.summary()


def test_a_drop_equal_to_the_allowance_passes_whatever_the_rounding():
    # 0.58 - 0.57 is 0.010000000000000009 in binary floating point: one point, not more.
    assert 0.58 - 0.57 > 0.01 and within(0.58 - 0.57, 0.01)
    assert within(0.0, 0.0) and not within(0.0101, 0.01)


def test_bag_gate_measures_detection_rate_at_the_default_far(
    tiny_export, int8_path, labelled_folder, bags_folder
):
    report = int8_gate(
        tiny_export.path, int8_path, max_drop=1.0, data=labelled_folder, bags=bags_folder
    )
    b = report.bags
    assert (b.n_images, b.n_threat, b.n_benign) == (12, 6, 6)
    assert b.target_far == 0.05  # the spec's default operating point, far5
    assert b.drop == pytest.approx(b.detection_rate_fp32 - b.detection_rate_int8)
    # At 5 % of 6 benign scans no benign scan may alarm: each model's FAR is 0.
    assert b.far_fp32 == 0.0 and b.far_int8 == 0.0
    # The AUROC matches scores taken one scan at a time through the runtime.
    records, _ = load_bags(bags_folder)
    threat = np.array([r.is_threat for r in records])
    fp32 = load_model(tiny_export.path)
    one_by_one = [fp32.predict(load_labelled_image(r)).image_score for r in records]
    assert b.auroc_fp32 == pytest.approx(auroc(one_by_one, threat))
    fp32_scores, int8_scores = image_scores([fp32, load_model(int8_path)], records)
    assert b.auroc_int8 == pytest.approx(auroc(int8_scores, threat))
    assert "detection rate at 5 % false alarms" in report.summary()
    # passed only when both measures are within the allowed drop
    tight = int8_gate(
        tiny_export.path, int8_path, b.drop - 1e-3, data=labelled_folder, bags=bags_folder
    )
    assert not tight.bags.passed and not tight.passed


def load_labelled_image(record):
    from xscan.imageio import read_image

    return read_image(record.image)


def test_bag_gate_needs_threat_and_benign_scans(tmp_path, labelled_folder):
    (tmp_path / "images").mkdir()
    src = sorted((labelled_folder / "images").glob("*.png"))[0]
    (tmp_path / "images" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "labels.csv").write_text(f"image,is_threat\nimages/{src.name},1\n")
    with pytest.raises(ValueError, match="needs threat and benign scans; found 1 threat of 1"):
        load_bags(tmp_path)


def test_calibration_set_shares_the_count_between_folders(
    tiny_export, labelled_folder, bags_folder
):
    spec = tiny_export.spec
    both = calibration_set([labelled_folder, bags_folder], spec, limit=7)
    assert len(both) == 7
    first = calibration_images(labelled_folder, spec, limit=4)
    assert all(np.array_equal(a, b) for a, b in zip(both[:4], first, strict=True))
    assert len(calibration_set(labelled_folder, spec, limit=5)) == 5


def _args(calib, gate, bags=None):
    return argparse.Namespace(
        calib=[str(calib)],
        calib_count=8,
        calib_method="minmax",
        gate_data=str(gate),
        gate_count=None,
        gate_bags=str(bags) if bags else None,
        gate_bags_format=None,
        gate_bags_split=None,
        gate_bags_count=None,
    )


def test_int8_written_with_card_when_the_gate_passes(tiny_export, labelled_folder, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(tiny_export.path.read_bytes())
    settings = {"precision": "fp32"}
    _int8(out, tiny_export.spec, settings, _args(labelled_folder, labelled_folder), 1.0, None)
    path = twin_path(out, "int8")
    assert path.is_file()
    card = json.loads((tmp_path / "m.int8.card.json").read_text())
    assert card["export"]["precision"] == "int8" and card["int8_gate"]["passed"]
    assert "INT8 accuracy gate" in (tmp_path / "m.int8.card.md").read_text()


def test_int8_card_and_refusal_carry_the_bag_measure(
    tiny_export, labelled_folder, bags_folder, tmp_path
):
    out = tmp_path / "m.onnx"
    out.write_bytes(tiny_export.path.read_bytes())
    args = _args(labelled_folder, labelled_folder, bags_folder)
    _int8(out, tiny_export.spec, {}, args, 1.0, None)
    card = json.loads((tmp_path / "m.int8.card.json").read_text())
    bags = card["int8_gate"]["bags"]
    assert bags["passed"] and (bags["n_threat"], bags["n_benign"]) == (6, 6)
    assert "Bag level on 6 threat / 6 benign scans" in (tmp_path / "m.int8.card.md").read_text()
    with pytest.raises(GateError, match=r"AP50 fp32 .*; detection rate at 5 % false alarms"):
        _int8(out, tiny_export.spec, {}, args, -1.5, None)
    assert not twin_path(out, "int8").exists()


def test_int8_refused_leaves_no_file(tiny_export, labelled_folder, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(tiny_export.path.read_bytes())
    with pytest.raises(GateError, match=r"INT8 model not written: AP50 fp32 .*drop"):
        _int8(out, tiny_export.spec, {}, _args(labelled_folder, labelled_folder), -0.5, None)
    assert not twin_path(out, "int8").exists()
    assert not (tmp_path / "m.int8.card.json").exists()


def test_card_says_how_the_scan_score_is_formed(tiny_export, tmp_path):
    from xscan.export.card import build_card, render_markdown

    one = render_markdown(build_card(tiny_export.path, tiny_export.spec, {}))
    assert "scan score (compared with the alarm threshold): the highest detection score\n" in one
    four = render_markdown(build_card(tiny_export.path, tiny_export.spec.replace(scan_views=4), {}))
    assert "highest detection score of each of 4 mirrored/turned views" in four
    assert "detections come from the views' merged heatmaps" in four
