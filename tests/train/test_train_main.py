from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from shapes_data import ShapesDataset, collate, tiny_config

import xscan.train.main as train_main
from xscan.config import load_config
from xscan.models import build_model
from xscan.train.checkpoint import load_checkpoint
from xscan.train.engine import NonFiniteLossError

REPO = Path(__file__).resolve().parents[2]


def _data(n=32, nan_at=None):
    return ShapesDataset(n, seed=0, nan_at=nan_at), ShapesDataset(18, seed=1)


def test_run_writes_checkpoints_metrics_and_operating_points(tmp_path):
    cfg = tiny_config(str(tmp_path / "run"))
    result = train_main.main(cfg, datasets=_data(), collate=collate)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml").train.epochs == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "AP50" in rows[-1]
    assert any((run / "tb").iterdir())
    ckpt = load_checkpoint(run / "best.pt")
    assert {"model", "model_raw", "optimizer", "epoch", "spec", "config"} <= set(ckpt)
    spec = ckpt["spec"]
    assert [p.name for p in spec.operating_points] == ["far1", "far5", "far10"]
    assert spec.default_operating_point == "far5"
    assert 0 <= spec.operating_points[1].far <= 0.05
    assert "AP50" in spec.info["metrics"] and len(spec.weights_sha256) == 64
    build_model(spec).load_state_dict(ckpt["model"])  # the export path's contract
    assert result["images"] == 64 and 0 <= result["data_wait_share"] <= 1


def test_resume_continues_to_the_same_weights(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_main.main(tiny_config(str(straight)), datasets=_data(), collate=collate)

    real = train_main.train_one_epoch

    def interrupted(*args, **kw):
        if kw.get("epoch", args[-1]) == 1:
            raise KeyboardInterrupt
        return real(*args, **kw)

    broken = tmp_path / "broken"
    monkeypatch.setattr(train_main, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_main.main(tiny_config(str(broken)), datasets=_data(), collate=collate)
    assert load_checkpoint(broken / "last.pt")["epoch"] == 1
    monkeypatch.setattr(train_main, "train_one_epoch", real)
    train_main.main(
        tiny_config(str(broken)), resume=broken / "last.pt", datasets=_data(), collate=collate
    )

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(broken / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in ("model", "model_raw"):
        for name, t in a[key].items():
            torch.testing.assert_close(b[key][name], t, rtol=0, atol=0, msg=f"{key}.{name}")


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    cfg = tiny_config(str(tmp_path / "run"))
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, step \d+: the loss is not finite"):
        train_main.main(cfg, datasets=_data(nan_at=5), collate=collate)


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from shapes_data import ShapesDataset, collate, tiny_config
import xscan.train.main as m
cfg = tiny_config({out!r}, epochs=1, threads=1, **{train!r})
m.main(cfg, datasets=(ShapesDataset(32, seed=0), ShapesDataset(9, seed=1)), collate=collate)
"""


def _ddp_train(tmp_path, port: int, **train) -> Path:
    script = tmp_path / "ddp_train.py"
    out = tmp_path / "run"
    script.write_text(
        DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), train=train)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    out = _ddp_train(tmp_path, 29561)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 32 samples over 2 ranks at batch 8: 2 steps per rank, 32 images in all.
    assert rows[0]["steps"] == 2
    assert json.loads((out / "summary.json").read_text())["images"] == 32
    assert load_checkpoint(out / "best.pt")["spec"].operating_points


@pytest.mark.slow
def test_two_process_ddp_with_a_time_budget_stops_every_rank_on_rank_0s_plan(tmp_path):
    # Each rank times its own steps; rank 0's plan is broadcast, so both stop on the same
    # step (a mismatch would hang the gradient all-reduce and time out).
    out = _ddp_train(tmp_path, 29562, time_budget_min=0.3, warmup_epochs=20, eval_every=100)
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["time_budget_plan"]["steps"]
    assert summary["steps"] == steps >= 35
    assert load_checkpoint(out / "last.pt")["global_step"] == steps


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_layout_reaches_the_network_and_batches(tmp_path, monkeypatch, channels_last):
    from xscan.train.engine import _to_device

    seen = []
    real = train_main.train_one_epoch

    def spy(model, criterion, loader, optimizer, scheduler, ctx, epoch):
        conv = next(
            m
            for m in model.modules()
            if isinstance(m, torch.nn.Conv2d)
            and m.kernel_size == (3, 3)
            and m.groups == 1
            and m.in_channels > 1
        )
        seen.append(
            (conv.weight.is_contiguous(memory_format=torch.channels_last), ctx.channels_last)
        )
        return real(model, criterion, loader, optimizer, scheduler, ctx, epoch)

    monkeypatch.setattr(train_main, "train_one_epoch", spy)
    cfg = tiny_config(str(tmp_path / "run"), epochs=1, channels_last=channels_last)
    train_main.main(cfg, datasets=_data(16), collate=collate)
    assert seen == [(channels_last, channels_last)]
    batch, _ = _to_device(torch.rand(2, 3, 8, 8), [], torch.device("cpu"), channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last) == channels_last
    # the checkpoint loads into a fresh (NCHW) network: the export path does not care
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    build_model(ckpt["spec"]).load_state_dict(ckpt["model"])
