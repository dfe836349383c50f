from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from xscan.export.metadata import get_spec
from xscan.export.onnx_export import export_module, load_for_export, parity_gate
from xscan.export.parity import ParityError
from xscan.runtime import load_model
from xscan.train.checkpoint import load_checkpoint, weights_sha256


def test_spec_round_trip(tiny_checkpoint, tiny_export):
    ckpt = load_checkpoint(tiny_checkpoint)
    model = load_model(tiny_export.path, threads=1)
    # Identity apart from weights_sha256, which the export fills in.
    assert model.spec == ckpt["spec"].replace(weights_sha256=weights_sha256(ckpt["model"]))
    assert model.spec.weights_sha256 and not ckpt["spec"].weights_sha256
    assert get_spec(onnx.load(str(tiny_export.path))) == model.spec
    assert model.spec.alarm_threshold == 0.55


def test_graph_contract(tiny_export):
    m = onnx.load(str(tiny_export.path))
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["images"]
    assert [o.name for o in m.graph.output] == ["boxes", "scores", "classes", "num_dets"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 96]
    assert m.opset_import[0].version == 17
    assert tiny_export.settings["nodes"] < tiny_export.settings["nodes_exported"]  # simplified


def test_parity_numbers_are_recorded(tiny_export):
    p = tiny_export.parity
    assert p.ok and p.n_images == 4
    assert p.detections_torch == p.detections_onnx > 0
    assert max(p.max_abs_error.values()) < 1e-3
    assert p.unmatched == 0


def test_dynamic_batch_1_and_5_agree(tiny_export):
    from xscan.export.parity import synthetic_scans

    model = load_model(tiny_export.path, threads=1, tiling="never")
    images = synthetic_scans(model.spec, 5, seed=3)
    model.batch_size = 5
    batched = model.predict_batch(images)
    assert sum(p.num_detections for p in batched) > 0
    for image, b in zip(images, batched, strict=True):
        single = model.predict(image)
        np.testing.assert_allclose(single.boxes, b.boxes, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(single.scores, b.scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(single.classes, b.classes)


def test_parity_gate_fails_loudly_on_a_wrong_graph(tiny_checkpoint, tiny_export, tmp_path):
    module, spec, _ = load_for_export(tiny_checkpoint)
    # Perturb one weight in the ONNX file: the graph no longer computes the module.
    m = onnx.load(str(tiny_export.path))
    for init in m.graph.initializer:
        if len(init.dims) == 4 and init.dims[0] == spec.num_classes:  # heatmap conv
            w = onnx.numpy_helper.to_array(init).copy()
            init.CopyFrom(onnx.numpy_helper.from_array(w * 1.5, init.name))
            break
    else:
        pytest.fail("heatmap weights not found")
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ParityError, match=r"bad\.onnx.*max abs error"):
        parity_gate(module, spec, bad, n_images=2)


def test_export_removes_file_when_parity_fails(tiny_checkpoint, tiny_export, tmp_path, monkeypatch):
    import xscan.export.onnx_export as ox

    module, spec, _ = load_for_export(tiny_checkpoint)
    exported = onnx.load(str(tiny_export.path))
    monkeypatch.setattr(ox, "build_onnx", lambda *a, **k: (exported, {"nodes": 1}))
    real = ox.run_onnx
    monkeypatch.setattr(
        ox, "run_onnx", lambda path, batch: {k: v + 0.01 for k, v in real(path, batch).items()}
    )
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="max abs error"):
        export_module(module, spec, out, parity_images=2)
    assert not out.exists()


def test_fp16_twin_runs_and_agrees(tiny_checkpoint, tiny_export, tmp_path):
    from xscan.export.onnx_export import run_onnx, run_torch
    from xscan.export.parity import detection_agreement, prepared_batch, synthetic_scans
    from xscan.export.quantize import PRECISION_KEY, convert_fp16

    path = convert_fp16(tiny_export.path, tmp_path / "tiny.fp16.onnx")
    m = onnx.load(str(path))
    assert {p.key: p.value for p in m.metadata_props}[PRECISION_KEY] == "fp16"
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # IO stays FP32
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    module, spec, _ = load_for_export(tiny_checkpoint)
    batch = prepared_batch(spec, synthetic_scans(spec, 3, 5))
    agree, n = detection_agreement(spec, run_torch(module, spec, batch), run_onnx(path, batch))
    assert n > 0 and agree >= 0.9
    assert load_model(path).spec == load_model(tiny_export.path).spec


def test_checkpoint_class_mismatch_is_a_clear_error(tiny_checkpoint, tmp_path):
    from xscan.train.checkpoint import save_checkpoint

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["spec"]["class_names"] = ["a", "b", "c"]
    bad = save_checkpoint(tmp_path / "bad.pt", **ckpt)
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_for_export(bad)
