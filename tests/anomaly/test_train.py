"""Benign-only training end to end on generated cargo scans, calibration, export, runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xscan.config import config_from_dict

SIZE = (256, 512)  # (H, W): 4x / 8x the 64-px input, so scans are tiled like real cargo


def _cfg(tmp_path):
    synth = {"kind": "cargo", "size": list(SIZE), "options": {"with_threat": False}}
    return config_from_dict(
        {
            "name": "anomaly_test",
            "seed": 0,
            "model": {
                "task": "anomaly",
                "class_names": ["anomaly"],
                "arch": "anomaly_patchcore",
                "input_size": [64, 64],
                "arch_params": {"layers": [1, 2], "map_stride": 8},
                "tile_overlap": 0.25,
                "name": "test-anomaly",
            },
            "data": {
                "train": [{"kind": "synth", "params": {**synth, "count": 6, "seed": 1000}}],
                "val": [{"kind": "synth", "params": {**synth, "count": 4, "seed": 2000}}],
            },
            "train": {
                "out_dir": str(tmp_path / "run"),
                "threads": 1,
                "extra": {"memory_bank_size": 1024, "crops_per_scan": 12, "patches_per_crop": 0},
            },
            "eval": {"far_targets": [0.25, 0.5], "default_far": 0.25},
        },
        source="test",
    )


def _plant(scan, y0: int, x0: int, h: int, w: int):
    """A dense block (-ln T_high = 2.2, more at low energy: metal-like) projected into a benign
    scan's raw transmissions, re-coloured by the scanner palette."""
    from xscan.synth.colormap import false_color

    t_low, t_high = scan.t_low.copy(), scan.t_high.copy()
    t_low[y0 : y0 + h, x0 : x0 + w] *= np.exp(-3.0)
    t_high[y0 : y0 + h, x0 : x0 + w] *= np.exp(-2.2)
    return false_color(t_low, t_high, "cargo")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from xscan.train.anomaly import main

    tmp = tmp_path_factory.mktemp("anomaly")
    cfg = _cfg(tmp)
    return main(cfg), cfg


def test_training_calibrates_and_stores_the_operating_points(trained):
    from xscan.train.checkpoint import load_checkpoint

    path, cfg = trained
    ckpt = load_checkpoint(path)
    spec = ckpt["spec"]
    assert spec.arch_params["memory_bank_size"] == ckpt["model"]["memory_bank"].shape[0] == 1024
    assert set(spec.score_normalization) == {"mean", "std"}
    assert [op.name for op in spec.operating_points] == ["far25", "far50"]
    assert spec.default_operating_point == "far25"
    cal = json.loads((path.parent / "calibration.json").read_text())
    z = (np.array(cal["benign_raw_scores"]) - spec.score_normalization["mean"]) / (
        spec.score_normalization["std"]
    )
    assert len(z) == 4
    for op in spec.operating_points:  # the requested FAR on the calibration scans
        assert (z >= op.threshold).mean() == pytest.approx(op.target_far)


def test_planted_anomaly_scores_above_every_benign_scan(trained, tmp_path):
    from xscan.anomaly.evaluate import load_scan_fn
    from xscan.export.onnx_export import export_checkpoint
    from xscan.runtime import load_model
    from xscan.synth.generator import SynthOptions, generate_scan

    path, _ = trained
    _, scan_fn = load_scan_fn(path)
    benign = [
        generate_scan("cargo", SIZE, 3000 + i, SynthOptions(with_threat=False)) for i in range(4)
    ]
    benign_scores = [scan_fn(s.rgb)[0] for s in benign]
    planted = _plant(benign[0], 140, 100, 20, 30)  # inside the loaded container
    score, amap = scan_fn(planted)
    assert score > max(benign_scores)
    y, x = np.unravel_index(np.argmax(amap), amap.shape)
    assert 130 <= y <= 170 and 90 <= x <= 140
    # the exported model in the torch-free runtime says the same and raises the alarm
    onnx_path = export_checkpoint(path, tmp_path / "m.onnx", parity_images=2).path
    runtime = load_model(onnx_path, threads=1)
    pred = runtime.predict(planted)
    assert pred.image_score == pytest.approx(score, rel=1e-3, abs=1e-3)
    assert pred.alarm and pred.tiles > 1
    assert pred.anomaly_map.shape == planted.shape[:2]


def test_xscan_eval_writes_metrics_overlays_and_reference_mode(trained, tmp_path):
    from xscan.anomaly.reference_synth import write_reference_set
    from xscan.cli import main as cli

    path, _ = trained
    data = tmp_path / "test_set"
    argv = [
        "synth",
        "--kind",
        "cargo",
        "--n",
        "4",
        "--size",
        f"{SIZE[1]}x{SIZE[0]}",
        "--seed",
        "7",
        "--threat-fraction",
        "0.5",
        "--out",
        str(data),
    ]
    assert cli(argv) == 0
    refs = tmp_path / "refs"
    assert write_reference_set(data, refs, crossings=1, seed=0) == 4
    out = tmp_path / "eval"
    assert cli(["eval", str(path), str(data), "--out", str(out), "--reference", str(refs)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_scans"] == 4 and m["image"]["n_threat"] == 2
    assert 0.0 <= m["image"]["auroc"] <= 1.0
    assert set(m["image"]["given"]) == {"far25", "far50"}
    assert 0.0 <= m["pixel"]["auroc"] <= 1.0 and 0.0 <= m["pixel"]["aupro_0.3"] <= 1.0
    assert 0.0 <= m["reference"]["image"]["auroc"] <= 1.0
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 4 and sum(n.startswith("threat_") for n in overlays) == 2


def test_location_normalised_training_calibrates_and_runs_in_the_runtime(tmp_path):
    """``train.extra.location_norm``: statistics from the benign training scans go into the
    spec, calibration (on other scans) gives the requested FAR on the standardised score, and
    the torch-free runtime scores exactly as the PyTorch scoring used for calibration."""
    from xscan.anomaly.evaluate import load_scan_fn
    from xscan.export.onnx_export import export_checkpoint
    from xscan.runtime import load_model
    from xscan.synth.generator import SynthOptions, generate_scan
    from xscan.train.anomaly import main
    from xscan.train.checkpoint import load_checkpoint

    d = _cfg(tmp_path).to_dict()
    d["data"]["train"][0]["params"]["count"] = 3
    d["train"]["extra"] = {
        "memory_bank_size": 256,
        "crops_per_scan": 4,
        "patches_per_crop": 64,
        "location_norm": {"grid": [4, 8], "std_floor": 1.0, "score": "max"},
    }
    path = main(config_from_dict(d, source="test"))
    spec = load_checkpoint(path)["spec"]
    loc = spec.location_normalization
    assert loc["grid"] == [4, 8] and loc["scans"] == 3 and len(loc["std"]) == 4
    cal = json.loads((path.parent / "calibration.json").read_text())
    z = (np.array(cal["benign_raw_scores"]) - spec.score_normalization["mean"]) / (
        spec.score_normalization["std"]
    )
    for op in spec.operating_points:
        assert (z >= op.threshold).mean() == pytest.approx(op.target_far)
    _, scan_fn = load_scan_fn(path)
    runtime = load_model(export_checkpoint(path, tmp_path / "m.onnx", parity_images=2).path)
    assert runtime.spec.location_normalization == loc
    scan = generate_scan("cargo", SIZE, 3100, SynthOptions(with_threat=False)).rgb
    score, amap = scan_fn(scan)
    pred = runtime.predict(scan)
    assert pred.image_score == pytest.approx(score, rel=1e-3, abs=1e-3)
    np.testing.assert_allclose(pred.anomaly_map, amap, rtol=1e-3, atol=2e-3)


class _PatchesAsImages:
    """A stand-in model whose 'image' ``(B, P, D)`` is its own patch embedding."""

    bank = None

    def eval(self):
        return self

    def embed(self, x):
        return x

    def set_memory_bank(self, bank):
        self.bank = bank


@pytest.mark.parametrize("sampling", ["random", "kcenter"])
def test_kcenter_patch_sampling_brings_a_rare_benign_detail_into_the_bank(sampling):
    """40 scans of 64 near-identical patches; one scan has a 3-patch detail (a spare wheel in an
    empty container). Kept 4 patches per input and a 16-row coreset: the crop's k-center keeps
    the detail, random sampling loses it, and the detail is then far from every bank row."""
    import torch

    from xscan.train.anomaly import fit_patchcore

    rng = np.random.default_rng(0)
    scans = []
    for i in range(40):
        x = 0.01 * rng.standard_normal((1, 64, 8)).astype(np.float32)
        if i == 17:
            x[0, 20:23] += 3.0 * np.eye(8, dtype=np.float32)[[1, 2, 3]]
        scans.append(x)
    model = _PatchesAsImages()
    opts = {"patches_per_crop": 4, "patch_sampling": sampling}
    opts |= {"memory_bank_size": 16, "coreset_proj_dim": 0}
    fit = fit_patchcore(model, scans, opts, seed=0)
    assert fit["patches"] == 160 and fit["memory_bank_size"] == 16
    detail = torch.from_numpy(scans[17][0, 20:23])
    nearest = torch.cdist(detail, model.bank).min(dim=1).values
    if sampling == "kcenter":
        assert float(nearest.max()) < 0.1
    else:
        assert float(nearest.max()) > 2.0


@pytest.mark.parametrize("sampling", ["kcenter", "novelty"])
def test_novelty_sampling_keeps_a_rare_detail_in_a_crop_busy_with_common_content(sampling):
    """Every scan holds 10 common kinds of patch (more than the 4 kept per input); one scan
    also holds a 3-patch detail close to one of them (distance 1.1, against 4.2 between the
    common kinds). The crop's own k-center spends its 4 picks on common kinds and never reaches
    the detail; novelty sampling's 2 extra picks per input, made against a reference (the first
    5 scans) that already covers the common kinds, take the detail, and the first row added to
    the bank after its coreset is the detail."""
    import torch

    from xscan.train.anomaly import fit_patchcore

    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(16, dtype=np.float32)[:10]
    scans = []
    for i in range(30):
        x = centres[np.arange(64) % 10] + 0.01 * rng.standard_normal((64, 16)).astype(np.float32)
        if i == 17:
            x[20:23] = 2.5 * np.eye(16, dtype=np.float32)[0] + np.eye(16, dtype=np.float32)[12]
        scans.append(x[None])
    model = _PatchesAsImages()
    opts = {"patches_per_crop": 4, "patch_sampling": sampling, "coreset_proj_dim": 0}
    opts |= {"memory_bank_size": 16, "reference_scans": 5, "reference_size": 16}
    opts |= {"novelty_per_crop": 2, "novelty_bank_size": 2}
    fit = fit_patchcore(model, scans, opts, seed=0)
    # 4 per input; with novelty 2 more per input once the 5 reference scans are in, of which
    # 2 join the 16 coreset rows
    assert fit["patches"] == (120 if sampling == "kcenter" else 120 + 25 * 2)
    assert fit["memory_bank_size"] == (16 if sampling == "kcenter" else 18)
    detail = torch.from_numpy(scans[17][0, 20:23])
    nearest = torch.cdist(detail, model.bank).min(dim=1).values
    if sampling == "novelty":
        assert float(nearest.max()) < 0.1
    else:
        assert float(nearest.min()) > 1.0


def test_unknown_patch_sampling_is_refused_naming_the_option(tmp_path):
    from xscan.train.anomaly import extra_options

    d = _cfg(tmp_path).to_dict()
    d["train"]["extra"]["patch_sampling"] = "stratified"
    with pytest.raises(ValueError, match="patch_sampling"):
        extra_options(config_from_dict(d, source="test"))
