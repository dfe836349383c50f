"""Tiled scoring of long scans: seamless stitching, and PyTorch vs the ONNX runtime."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from xscan.anomaly.scanscore import score_scan, torch_runner
from xscan.models import build_model
from xscan.models.anomaly_patchcore import greedy_coreset
from xscan.spec import ModelSpec
from xscan.train.checkpoint import save_checkpoint


def _smooth_scan(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth grey transmission-like image ``(H, W, 3) uint8``."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 12)
    x = (x - x.min()) / (x.max() - x.min())
    return np.repeat((40 + 200 * x)[:, :, None], 3, axis=2).astype(np.uint8)


def _darkness_runner(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A translation-equivariant stand-in model: map = darkness at 1/4 resolution."""
    dark = 1.0 - batch.mean(axis=1, keepdims=True)
    b, _, h, w = dark.shape
    amap = dark.reshape(b, 1, h // 4, 4, w // 4, 4).mean(axis=(3, 5))
    return amap, amap.reshape(b, -1).max(axis=1)


def _spec(arch: str = "toy", **params) -> ModelSpec:
    return ModelSpec(
        task="anomaly",
        class_names=("anomaly",),
        input_size=(64, 64),
        arch=arch,
        arch_params=params,
        tile_overlap=0.25,
        score_normalization={"mean": 0.0, "std": 1.0},
    ).validate()


def test_tiled_map_is_seamless_and_matches_the_whole_scan():
    image = _smooth_scan(150, 420, 0)  # 2.3x and 6.6x the input: tiled
    r = score_scan(image, _spec(), _darkness_runner)
    assert r.tiles > 1 and r.amap.shape == (150, 420)
    truth = 1.0 - image.astype(np.float32).mean(axis=2) / 255.0
    truth = cv2.blur(truth, (4, 4))
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(r.amap - truth)[inner].max() < 0.02
    # no seam: the stitched map is as smooth across tile borders as anywhere else
    step = np.abs(np.diff(r.amap, axis=1))[inner]
    ref_step = np.abs(np.diff(truth, axis=1))[inner]
    assert step.max() < 2 * ref_step.max() + 1e-3
    assert r.score == pytest.approx(float(truth.max()), abs=0.03)


def test_patchcore_with_edge_padding_stitches_a_uniform_scan_without_a_tile_grid():
    """A real PatchCore: the bank holds the patches of a uniform grey scan (interior and
    border alike); tiled over a larger uniform scan, the stitched map shows no tile grid with
    edge padding, while zero padding makes the tile borders stand out."""
    image = np.full((150, 420, 3), 170, np.uint8)
    peak = {}
    for padding in ("zeros", "replicate"):
        torch.manual_seed(0)
        spec = _spec("anomaly_patchcore", memory_bank_size=16, padding=padding)
        model = build_model(spec).eval()
        crop = torch.from_numpy(image[:64, :64].transpose(2, 0, 1)[None] / 255.0).float()
        with torch.no_grad():
            emb = model.features(crop)[0, :, 3, 3][None]  # one interior patch
        model.set_memory_bank(emb)
        r = score_scan(image, spec, torch_runner(model))
        assert r.tiles > 1
        peak[padding] = float(r.amap.max())
    assert peak["replicate"] < 1e-3
    assert peak["zeros"] > 100 * max(peak["replicate"], 1e-6)


@pytest.mark.parametrize(
    "located,scan_score,padding",
    [
        (False, "tile_max", "zeros"),
        (False, "map_max", "zeros"),
        (False, "map_max", "replicate"),
        (True, "tile_max", "zeros"),
    ],
    ids=["raw", "map_max", "map_max_replicate", "location_normalised"],
)
def test_torch_scan_scores_match_the_onnx_runtime_on_tiled_scans(
    tmp_path, located, scan_score, padding
):
    from xscan.anomaly.location import fit_location_normalization
    from xscan.export.onnx_export import export_checkpoint
    from xscan.runtime import load_model

    torch.manual_seed(0)
    spec = _spec("anomaly_patchcore", memory_bank_size=64, padding=padding).replace(
        scan_score=scan_score
    )
    model = build_model(spec).eval()
    # benign crops of 12 scans: with 4, ordinary content at a scan's edge is as new to the bank
    # as the dark block (with edge padding it outscored it)
    crops = torch.from_numpy(
        np.stack([_smooth_scan(64, 64, s) for s in range(12)]).transpose(0, 3, 1, 2) / 255.0
    ).float()
    emb = model.embed(crops).reshape(-1, model.features.dim)
    model.set_memory_bank(emb[greedy_coreset(emb, 64, proj_dim=32)])
    if located:  # per-location statistics of benign scans, applied by both sides
        benign = [
            score_scan(_smooth_scan(140, 300, s), spec, torch_runner(model)).amap
            for s in (20, 21, 22)
        ]
        loc = fit_location_normalization(
            benign, grid=(4, 8), score="top_fraction", top_fraction=0.01
        )
        spec = spec.replace(location_normalization=loc)
    ckpt = save_checkpoint(tmp_path / "m.pt", model=model.state_dict(), spec=spec)
    onnx_path = export_checkpoint(ckpt, tmp_path / "m.onnx", parity_images=2).path
    runtime = load_model(onnx_path, threads=1)
    for seed in (10, 11):
        image = _smooth_scan(140, 300, seed)
        image[50:70, 100:140] = 0  # a dark block the bank has not seen
        ours = score_scan(image, spec, torch_runner(model))
        pred = runtime.predict(image)
        assert pred.tiles == ours.tiles > 1
        assert pred.image_score == pytest.approx(ours.score, rel=1e-3, abs=1e-3)
        np.testing.assert_allclose(pred.anomaly_map, ours.amap, rtol=1e-3, atol=2e-3)
        if scan_score == "map_max":  # the score is the stitched map's own maximum
            assert ours.score == pytest.approx(float(ours.amap.max()), rel=1e-6)
            assert pred.image_score == pytest.approx(float(pred.anomaly_map.max()), rel=1e-3)
        if not located:  # (what standardising does to a map: tests/anomaly/test_location.py)
            y, x = np.unravel_index(np.argmax(ours.amap), ours.amap.shape)
            assert 40 <= y <= 80 and 90 <= x <= 150
