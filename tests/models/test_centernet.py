from __future__ import annotations

import numpy as np
import pytest
import torch

from xscan.models import build_inference_module, build_model, register_model
from xscan.models.centernet_loss import build_criterion, build_targets
from xscan.spec import ModelSpec

TINY = {"backbone": "mobilenet_v3_small", "fpn_channels": 16, "head_channels": 16, "head_depth": 1}


def tiny_spec(**kw) -> ModelSpec:
    base = dict(
        task="detect",
        class_names=("knife", "gun"),
        input_size=(64, 64),
        arch="centernet",
        arch_params=dict(TINY),
        max_detections=20,
        score_threshold=0.3,
    )
    base.update(kw)
    return ModelSpec(**base).validate()


def test_register_model_duplicate_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("centernet")(lambda spec: torch.nn.Identity())


def test_unknown_arch_and_param_are_clear_errors():
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_model(tiny_spec(arch="nope"))
    with pytest.raises(ValueError, match="unknown key"):
        build_model(tiny_spec(arch_params={**TINY, "depth": 3}))
    with pytest.raises(ValueError, match="backbone: expected one of"):
        build_model(tiny_spec(arch_params={**TINY, "backbone": "regnet_x_9gf"}))


@pytest.mark.parametrize("batch", [1, 3])
def test_inference_module_shapes_and_dtypes(batch):
    spec = tiny_spec()
    torch.manual_seed(0)
    module = build_inference_module(build_model(spec), spec)
    boxes, scores, classes, num_dets = module(torch.rand(batch, 3, 64, 64))
    k = spec.max_detections
    assert boxes.shape == (batch, k, 4) and boxes.dtype == torch.float32
    assert scores.shape == (batch, k) and scores.dtype == torch.float32
    assert classes.shape == (batch, k) and classes.dtype == torch.int64
    assert num_dets.shape == (batch,) and num_dets.dtype == torch.int64
    assert (boxes >= 0).all() and (boxes[..., [0, 2]] <= 64).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # sorted
    assert ((classes >= 0) & (classes < 2)).all()
    for b in range(batch):
        n = int(num_dets[b])
        assert (scores[b, :n] >= spec.score_threshold).all()
        assert (scores[b, n:] < spec.score_threshold).all()


def test_inference_pads_when_map_has_fewer_locations_than_k():
    spec = tiny_spec(class_names=("knife",), max_detections=100)  # 8x8x1 = 64 locations
    module = build_inference_module(build_model(spec), spec)
    boxes, scores, classes, num_dets = module(torch.rand(2, 3, 64, 64))
    assert boxes.shape == (2, 100, 4)
    assert (scores[:, 64:] == 0).all()


@pytest.mark.parametrize("modality, channels", [("raw_dual", 3), ("gray", 1)])
def test_modality_sets_input_channels(modality, channels):
    spec = tiny_spec(modality=modality, mean=(0.5,) * channels, std=(0.25,) * channels)
    out = build_model(spec)(torch.rand(2, channels, 64, 64))
    assert out["heatmap"].shape == (2, 2, 8, 8) and out["ltrb"].shape == (2, 4, 8, 8)


def test_resnet_backbone_at_stride_4():
    spec = tiny_spec(
        arch_params={
            "backbone": "resnet18",
            "fpn_channels": 16,
            "head_channels": 16,
            "head_stride": 4,
        }
    )
    out = build_model(spec)(torch.rand(1, 3, 64, 64))
    assert out["heatmap"].shape == (1, 2, 16, 16)


@pytest.mark.parametrize("backbone", ["regnet_x_400mf", "shufflenet_v2_x0_5"])
def test_regnet_and_shufflenet_backbones_with_gray_input(backbone):
    spec = tiny_spec(
        modality="gray",
        mean=(0.5,),
        std=(0.25,),
        arch_params={"backbone": backbone, "fpn_channels": 16, "head_channels": 16},
    )
    model = build_model(spec)
    out = model(torch.rand(2, 1, 64, 64))
    assert out["heatmap"].shape == (2, 2, 8, 8) and out["ltrb"].shape == (2, 4, 8, 8)
    (out["heatmap"].mean() + out["ltrb"].mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_num_classes_mismatch_is_a_clear_error():
    weights = build_model(tiny_spec()).state_dict()
    other = build_model(tiny_spec(class_names=("knife", "gun", "blade")))
    with pytest.raises(ValueError, match=r"2 class\(es\) but the spec has 3"):
        other.load_state_dict(weights)
    build_model(tiny_spec()).load_state_dict(weights)  # same spec loads


def test_targets_peak_at_object_centres():
    boxes = torch.tensor([[8.0, 8.0, 40.0, 24.0]])
    t = build_targets([{"boxes": boxes, "labels": torch.tensor([1])}], 2, (8, 8), 8)
    heat = t["heatmap"][0]
    assert heat[0].max() == 0
    assert heat[1, 2, 3] == 1.0 and heat[1].eq(1).sum() == 1  # centre (24, 16) -> cell (2, 3)
    assert t["weight"][0, 2, 3] > 0
    assert torch.equal(t["boxes"][0, :, 2, 3], boxes[0])


def _shapes_dataset(n: int, seed: int) -> list[tuple[torch.Tensor, dict]]:
    """Dark rectangles (class 0) and bright-framed squares (class 1) on a white background."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        img = np.ones((3, 64, 64), np.float32)
        boxes, labels = [], []
        for _ in range(rng.integers(1, 3)):
            w, h = rng.integers(12, 28, size=2)
            x, y = rng.integers(0, 64 - w), rng.integers(0, 64 - h)
            label = int(rng.integers(0, 2))
            img[:, y : y + h, x : x + w] = 0.2 if label == 0 else 0.6
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        items.append((torch.from_numpy(img), target))
    return items


def test_overfits_a_tiny_generated_set():
    torch.manual_seed(0)
    spec = tiny_spec()
    model = build_model(spec)
    criterion = build_criterion(model)
    data = _shapes_dataset(8, seed=1)
    images = torch.stack([d[0] for d in data])
    targets = [d[1] for d in data]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(60):
        loss = criterion(model(images), targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.35 * np.mean(losses[:5])


def _export(module, args, names_in, names_out, path):
    torch.onnx.export(
        module,
        args,
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=names_in,
        output_names=names_out,
        dynamic_axes={n: {0: "batch"} for n in names_in + names_out},
    )
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_inference_module_exports_to_onnx_with_dynamic_batch(tmp_path):
    spec = tiny_spec()
    torch.manual_seed(0)
    module = build_inference_module(build_model(spec), spec)
    outs = ["boxes", "scores", "classes", "num_dets"]
    sess = _export(module, (torch.rand(2, 3, 64, 64),), ["images"], outs, tmp_path / "m.onnx")
    x = torch.rand(3, 3, 64, 64)
    got = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in module(x)]
    assert [g.shape for g in got] == [w.shape for w in want]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-3, atol=1e-4)
    assert got[2].dtype == np.int64 and np.array_equal(got[3], want[3])


def test_peak_decode_exports_with_exact_parity(tmp_path):
    spec = tiny_spec()
    decoder = build_inference_module(build_model(spec), spec).decoder
    g = torch.Generator().manual_seed(0)
    heat, ltrb = torch.randn(2, 2, 8, 8, generator=g) * 3, torch.rand(2, 4, 8, 8, generator=g) * 20
    outs = ["boxes", "scores", "classes", "num_dets"]
    sess = _export(decoder, (heat, ltrb), ["heatmap", "ltrb"], outs, tmp_path / "d.onnx")
    heat, ltrb = torch.randn(3, 2, 8, 8, generator=g) * 3, torch.rand(3, 4, 8, 8, generator=g) * 20
    got = sess.run(None, {"heatmap": heat.numpy(), "ltrb": ltrb.numpy()})
    want = [t.numpy() for t in decoder(heat, ltrb)]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)
    peaks = want[1] > 0  # after the peaks come suppressed cells, all 0, in no defined order
    assert peaks.sum() > 10
    np.testing.assert_allclose(got[0][peaks], want[0][peaks], rtol=1e-4, atol=1e-3)
    assert np.array_equal(got[2][peaks], want[2][peaks]) and np.array_equal(got[3], want[3])
