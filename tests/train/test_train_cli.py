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
