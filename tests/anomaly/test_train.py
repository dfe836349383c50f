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
