from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from xscan.models import build_inference_module, build_model
from xscan.models.anomaly_patchcore import greedy_coreset, nearest_distance
from xscan.spec import ModelSpec


def _spec(arch: str, **params) -> ModelSpec:
    return ModelSpec(
        task="anomaly",
        class_names=("anomaly",),
        input_size=(64, 96),
        arch=arch,
        arch_params=params,
    ).validate()


def _fitted_patchcore(bank_size: int = 40, **params):
    torch.manual_seed(0)
    spec = _spec("anomaly_patchcore", memory_bank_size=bank_size, **params)
    model = build_model(spec).eval()
    emb = model.embed(torch.rand(2, 3, 64, 96)).reshape(-1, model.features.dim)
    model.set_memory_bank(emb[greedy_coreset(emb, bank_size, proj_dim=32)])
    return model, spec


def _export(module: torch.nn.Module, sample: torch.Tensor) -> tuple[ort.InferenceSession, list]:
    f = io.BytesIO()
    torch.onnx.export(
        module,
        (sample,),
        f,
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["anomaly_map", "scores"],
        dynamic_axes={"images": {0: "batch"}, "anomaly_map": {0: "batch"}, "scores": {0: "batch"}},
    )
    ops = sorted({n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node})
    return ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"]), ops


def test_nearest_distance_matches_cdist():
    g = torch.Generator().manual_seed(1)
    q, b = torch.randn(50, 16, generator=g), torch.randn(30, 16, generator=g)
    expected = torch.cdist(q, b).min(dim=1).values
    assert torch.allclose(nearest_distance(q, b), expected, atol=1e-4)


def test_coreset_covers_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(5, 8, generator=g) * 20
    pts = (centres[:, None] + torch.randn(5, 100, 8, generator=g)).reshape(-1, 8)
    idx = greedy_coreset(pts, 5, proj_dim=4, seed=3)
    assert sorted((idx // 100).tolist()) == [0, 1, 2, 3, 4]  # one point per cluster
    assert torch.equal(idx, greedy_coreset(pts, 5, proj_dim=4, seed=3))


def test_coreset_continues_from_rows_already_covered():
    """With ``covered`` (one point of each of clusters 0-2 already in the bank) the two picks
    are the two clusters the bank lacks, not a second point of a covered one."""
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(5, 8, generator=g) * 20
    pts = (centres[:, None] + torch.randn(5, 100, 8, generator=g)).reshape(-1, 8)
    idx = greedy_coreset(pts, 2, proj_dim=4, seed=3, covered=pts[[0, 100, 200]])
    assert sorted((idx // 100).tolist()) == [3, 4]


def test_memory_bank_size_round_trips_through_spec_and_state_dict():
    model, spec = _fitted_patchcore(40)
    state = model.state_dict()
    assert state["memory_bank"].shape == (40, model.features.dim)
    rebuilt_spec = ModelSpec.from_json(spec.to_json())
    rebuilt = build_model(rebuilt_spec).eval()
    rebuilt.load_state_dict(state)  # strict: shapes must match before loading
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for a, b in zip(model(x), rebuilt(x), strict=True):
            assert torch.equal(a, b)
    wrong = build_model(_spec("anomaly_patchcore", memory_bank_size=39))
    with pytest.raises(RuntimeError, match="memory_bank"):
        wrong.load_state_dict(state)


@pytest.mark.parametrize(
    "arch", ["anomaly_patchcore", "anomaly_patchcore_replicate", "anomaly_stfpm"]
)
def test_torch_and_onnxruntime_agree_on_maps_and_scores(arch):
    if arch == "anomaly_patchcore_replicate":
        model, spec = _fitted_patchcore(padding="replicate")
        arch = "anomaly_patchcore"
    elif arch == "anomaly_patchcore":
        model, spec = _fitted_patchcore()
    else:
        torch.manual_seed(0)
        spec = _spec(arch)
        model = build_model(spec).eval()
    module = build_inference_module(model, spec)
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(7))
    sess, ops = _export(module, x[:2])
    assert "Cdist" not in ops
    if arch == "anomaly_patchcore":
        assert {"Gemm", "ArgMin"} <= set(ops)
    amap, scores = sess.run(["anomaly_map", "scores"], {"images": x.numpy()})  # batch 3: dynamic
    with torch.no_grad():
        tmap, tscores = module(x)
    stride = 8 if arch == "anomaly_patchcore" else 4
    assert amap.shape == (3, 1, 64 // stride, 96 // stride)
    assert scores.shape == (3,)
    np.testing.assert_allclose(amap, tmap.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(scores, tscores.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backbone", ["xray", "detector"])
def test_replicate_padding_gives_border_patches_the_features_of_the_interior(backbone):
    """A uniform region has one feature everywhere with edge padding; zero padding makes the
    border patches differ (the tile grid a stitched cargo map would show)."""
    x = torch.full((1, 3, 64, 96), 0.8)
    spread = {}
    for padding in ("zeros", "replicate"):
        torch.manual_seed(0)
        spec = _spec("anomaly_patchcore", backbone=backbone, padding=padding)
        model = build_model(spec).eval()
        with torch.no_grad():
            f = model.features(x)[0]  # (D, h, w)
        centre = f[:, f.shape[1] // 2, f.shape[2] // 2]
        spread[padding] = float((f - centre[:, None, None]).norm(dim=0).max() / centre.norm())
    assert spread["replicate"] < 1e-5
    assert spread["zeros"] > 0.05


def test_unknown_padding_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="arch_params.padding"):
        build_model(_spec("anomaly_patchcore", padding="reflect"))


def test_student_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model(_spec("anomaly_stfpm")).train()
    opt = torch.optim.Adam(model.student.parameters(), lr=1e-2)
    x = torch.rand(4, 3, 64, 96, generator=torch.Generator().manual_seed(9))
    first = float(model.loss(x).detach())
    for _ in range(10):
        opt.zero_grad()
        loss = model.loss(x)
        loss.backward()
        opt.step()
    assert float(model.loss(x).detach()) < 0.7 * first
    assert all(not p.requires_grad for p in model.teacher.parameters())


def test_parity_holds_where_patches_match_the_bank_exactly():
    """Distances ~0 (benign air, training patches) are where the expanded form cancels."""
    torch.manual_seed(0)
    spec = _spec("anomaly_patchcore", memory_bank_size=200)
    model = build_model(spec).eval()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    x[:, :, :32] = 1.0  # white air, as in every scan
    emb = model.embed(x).reshape(-1, model.features.dim)
    model.set_memory_bank(emb[greedy_coreset(emb, 200, proj_dim=32)])
    sess, _ = _export(model, x)
    amap, scores = sess.run(["anomaly_map", "scores"], {"images": x.numpy()})
    with torch.no_grad():
        tmap, tscores = model(x)
    np.testing.assert_allclose(amap, tmap.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(scores, tscores.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("layers", [[1, 2], [2, 3]])
def test_detector_backbone_patchcore_matches_onnxruntime(layers):
    """The detector's MobileNetV3-Small stages (random weights here) export and agree."""
    torch.manual_seed(0)
    spec = _spec("anomaly_patchcore", backbone="detector", layers=layers, memory_bank_size=40)
    model = build_model(spec).eval()
    assert model.features.dim == {(1, 2): 16 + 24, (2, 3): 24 + 48}[tuple(layers)]
    emb = model.embed(torch.rand(2, 3, 64, 96)).reshape(-1, model.features.dim)
    model.set_memory_bank(emb[greedy_coreset(emb, 40, proj_dim=32)])
    module = build_inference_module(model, spec)
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(7))
    sess, ops = _export(module, x[:2])
    assert "HardSwish" in ops or "HardSigmoid" in ops  # MobileNetV3 blocks are in the graph
    amap, scores = sess.run(["anomaly_map", "scores"], {"images": x.numpy()})
    with torch.no_grad():
        tmap, tscores = module(x)
    assert amap.shape == (3, 1, 8, 12)
    np.testing.assert_allclose(amap, tmap.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(scores, tscores.numpy(), rtol=1e-3, atol=1e-4)
    # normalisation is inside the graph: the backbone's own buffers, the spec's mean/std
    assert torch.equal(model.features.backbone.mean.flatten(), torch.tensor(spec.mean))


def test_detector_backbone_loads_detector_checkpoint_and_refuses_mismatches(tmp_path):
    from xscan.models.anomaly_backbone import load_backbone_weights
    from xscan.train.checkpoint import save_checkpoint

    torch.manual_seed(1)
    det_spec = ModelSpec(
        task="detect",
        class_names=("firearm", "knife"),
        input_size=(64, 64),
        arch="centernet",
        arch_params={"backbone": "mobilenet_v3_small", "head_stride": 8},
    ).validate()
    detector = build_model(det_spec)
    path = save_checkpoint(tmp_path / "det.pt", model=detector.state_dict(), spec=det_spec)
    spec = _spec("anomaly_patchcore", backbone="detector", layers=[2, 3])
    model = build_model(spec)
    load_backbone_weights(model.features.backbone, str(path))
    det_state = detector.state_dict()
    own = model.features.backbone.state_dict()
    assert all(torch.equal(v, det_state[f"backbone.{k}"]) for k, v in own.items() if "stages" in k)
    # a width the detector was not trained with: every stage tensor is misshapen
    narrow = build_model(_spec("anomaly_patchcore", backbone="detector", width=0.5))
    with pytest.raises(ValueError, match="det.pt.*misshapen.*width"):
        load_backbone_weights(narrow.features.backbone, str(path))
    # a detector normalised differently from the anomaly spec
    other = det_spec.replace(mean=(0.4, 0.4, 0.4))
    path2 = save_checkpoint(tmp_path / "det2.pt", model=detector.state_dict(), spec=other)
    with pytest.raises(ValueError, match="det2.pt.*mean"):
        load_backbone_weights(model.features.backbone, str(path2))
    with pytest.raises(ValueError, match="backbone"):
        build_model(_spec("anomaly_patchcore", backbone="resnet"))
