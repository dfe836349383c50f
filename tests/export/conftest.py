from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from xscan.spec import ModelSpec, OperatingPoint


def tiny_detector_spec() -> ModelSpec:
    return ModelSpec(
        task="detect",
        class_names=("firearm", "knife"),
        input_size=(64, 96),
        arch="centernet",
        arch_params={
            "backbone": "mobilenet_v3_small",
            "fpn_channels": 16,
            "head_channels": 16,
            "head_depth": 1,
        },
        score_threshold=0.3,
        max_detections=20,
        operating_points=(OperatingPoint("far5", 0.55, target_far=0.05, far=0.05),),
        default_operating_point="far5",
        name="tiny-detector",
        version="3",
        info={"metrics": {"AP50": 0.42}, "data": {"train": "synthetic baggage, 100 scans"}},
    ).validate()


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """A seeded random CenterNet whose heatmap head is rescaled so that scores spread over
    (0, 1) with distinct peaks, as a trained model's do (a fresh head gives ~0.01 everywhere,
    where every comparison is a tie)."""
    from xscan.export.parity import prepared_batch, synthetic_scans
    from xscan.models import build_model
    from xscan.train.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    spec = tiny_detector_spec()
    model = build_model(spec).eval()
    x = torch.from_numpy(prepared_batch(spec, synthetic_scans(spec, 4, seed)))
    feats = {}
    hook = model.head.cls_tower.register_forward_hook(lambda m, i, o: feats.update(f=o))
    with torch.no_grad():
        model(x)
    hook.remove()
    f = feats["f"]
    mean, std = f.mean(dim=(0, 2, 3)), f.std(dim=(0, 2, 3)).clamp_min(1e-6)
    head = model.head.heatmap
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(head.weight.shape, generator=g) / std.view(1, -1, 1, 1)
        head.weight.copy_(w * 2.5 / f.shape[1] ** 0.5)
        head.bias.copy_(-2.0 - (head.weight[:, :, 0, 0] * mean).sum(1))
    config = {"export": {"opset": 17, "int8_max_ap50_drop": 0.01, "simplify": True}}
    return save_checkpoint(path, model=model.state_dict(), spec=spec, config=config, epoch=1)


def write_labelled_folder(model_path: Path, out: Path, n: int = 12, seed: int = 7) -> Path:
    """An ``xscan synth``-layout folder whose labels are the FP32 model's confident
    detections (score >= 0.5): a set on which the FP32 model has AP50 = 1 and any loss of
    a quantised twin shows."""
    from xscan.export.parity import synthetic_scans
    from xscan.runtime import load_model

    model = load_model(model_path, threads=1, tiling="never")
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, im in enumerate(synthetic_scans(model.spec, n, seed)):
        name = f"scan_{i:03d}.png"
        cv2.imwrite(str(out / "images" / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        p = model.predict(im)
        keep = p.scores >= 0.5
        images.append({"id": i + 1, "file_name": name, "width": im.shape[1], "height": im.shape[0]})
        for b, c in zip(p.boxes[keep], p.classes[keep], strict=True):
            x0, y0, x1, y1 = (float(v) for v in b)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(model.spec.class_names)]
    data = {"images": images, "annotations": anns, "categories": cats}
    (out / "annotations.json").write_text(json.dumps(data))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from xscan.export.onnx_export import export_checkpoint

    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    return export_checkpoint(tiny_checkpoint, out, parity_images=4)


@pytest.fixture(scope="session")
def labelled_folder(tiny_export, tmp_path_factory) -> Path:
    return write_labelled_folder(tiny_export.path, tmp_path_factory.mktemp("gate") / "gate")


@pytest.fixture(scope="session")
def bags_folder(labelled_folder, tmp_path_factory):
    """An image-level set in the ``xray_real_dev`` CSV layout: the labelled folder's scans,
    half of them marked as threat scans."""
    out = tmp_path_factory.mktemp("bags") / "bags"
    (out / "images").mkdir(parents=True)
    lines = ["image,is_threat"]
    for i, src in enumerate(sorted((labelled_folder / "images").glob("*.png"))):
        (out / "images" / src.name).write_bytes(src.read_bytes())
        lines.append(f"images/{src.name},{i % 2}")
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return out


def random_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
