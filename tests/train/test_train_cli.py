from __future__ import annotations

import json

import yaml

from xscan.cli import main as cli
from xscan.train.checkpoint import load_checkpoint

CONFIG = {
    "name": "cli-smoke",
    "seed": 1,
    "model": {
        "task": "detect",
        "class_names": ["firearm", "knife", "scissors", "wrench"],
        "input_size": [64, 64],
        "arch": "centernet",
        "arch_params": {
            "backbone": "mobilenet_v3_small",
            "fpn_channels": 16,
            "head_channels": 16,
            "head_depth": 1,
        },
        "max_detections": 20,
    },
    "data": {
        "train": [{"kind": "synth", "params": {"kind": "baggage", "threat_fraction": 0.7}}],
        "val": [{"kind": "synth", "params": {"kind": "baggage"}}],
        "samples_per_epoch": 16,
        "num_workers": 0,
    },
    "train": {
        "epochs": 1,
        "batch_size": 8,
        "device": "cpu",
        "log_every": 0,
        "extra": {"eval_samples": 8},
    },
}


def test_xscan_train_on_online_synthetic_scans_then_resume(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    assert cli(["train", str(cfg), "--out", str(out)]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    rc = cli(
        [
            "train",
            str(cfg),
            "--out",
            str(out),
            "--set",
            "train.epochs=2",
            "--resume",
            str(out / "last.pt"),
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    best = load_checkpoint(out / "best.pt")
    assert best["spec"].operating_points and best["config"]["train"]["epochs"] == 2
    assert json.loads((out / "summary.json").read_text())["images"] == 16


def test_xscan_train_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "train": {"epochs": 1, "lr_typo": 1}}))
    assert cli(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2


def test_xscan_train_reports_ap_over_the_threats_that_show(tmp_path):
    # Generated folders carry each object's conspicuity: the validation and test passes
    # report AP over the threats that show beside the plain AP, in the logs and the summary.
    scans = tmp_path / "scans"
    assert cli(["synth", "--n", "8", "--size", "96x96", "--seed", "5", "--out", str(scans)]) == 0
    cfg = tmp_path / "cfg.yaml"
    folder = [{"kind": "xscan", "path": str(scans)}]
    cfg.write_text(
        yaml.safe_dump({**CONFIG, "data": {**CONFIG["data"], "val": folder, "test": folder}})
    )
    out = tmp_path / "run"
    assert cli(["train", str(cfg), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for split in ("val", "test"):
        assert 0 <= summary[split]["AP50_shows"] <= 1, split
        assert 0 <= summary[split]["AP50_any_class_shows"] <= 1, split
        assert summary[split]["AP50_any_class"] >= 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "AP50_shows" in row
