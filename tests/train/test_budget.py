from __future__ import annotations

import json
import math

import pytest
import torch
from shapes_data import ShapesDataset, collate, tiny_config

import xscan.train.main as train_main
from xscan.config import load_config
from xscan.train.budget import BudgetProbe, count_eval_passes, plan_steps
from xscan.train.checkpoint import load_checkpoint


def _data():
    return ShapesDataset(32, seed=0), ShapesDataset(18, seed=1)  # 4 steps per epoch at batch 8


def test_eval_passes_every_n_epochs_and_after_the_last():
    assert count_eval_passes(400, 100, 2) == 2  # epochs 2 and 4
    assert count_eval_passes(450, 100, 2) == 3  # epochs 2, 4 and the partial 5th
    assert count_eval_passes(100, 100, 1) == 1


def test_plan_fills_the_budget_with_steps_and_validation_passes():
    plan = plan_steps(
        budget_s=1000,
        elapsed_s=100,
        done_steps=40,
        seconds_per_step=0.5,
        steps_per_epoch=100,
        eval_every=2,
        val_batches=20,
    )
    # 900 s left: 1840 steps without evaluation, 1825 on the quarter-epoch grid (25 steps).
    # A pass costs 20 * 0.5 * 0.5 + 1 = 6 s, starting an epoch 1 s. Stepping down the grid:
    # 1700 steps (17 epochs: 16 more, 9 passes) cost 830 + 54 + 16 = 900 s: it fits exactly.
    assert plan.steps == 1700
    assert plan.eval_passes == 9 and plan.eval_pass_s == pytest.approx(6.0)


def test_plan_never_undoes_steps_already_taken():
    plan = plan_steps(
        budget_s=10,
        elapsed_s=30,
        done_steps=35,
        seconds_per_step=0.1,
        steps_per_epoch=100,
        eval_every=1,
        val_batches=0,
    )
    assert plan.steps == 35 and plan.eval_passes == 0


def test_probe_plans_once_from_the_timed_steps():
    plans = []
    probe = BudgetProbe(100.0, 0.0, 40, 1, 0, plans.append, warm=2, probe=4)
    for step, now in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 6.0), (7, 7.0)]:
        probe.step_done(step, now)
    assert len(plans) == 1
    plan = plans[0]
    # 1 s/step measured over steps 2-6; 94 s left after step 6: 6 + 94 = 100 steps (a quarter
    # epoch is 10) would cost 94 s + 2 epoch starts = 96 s; 90 steps cost 84 + 2 s.
    assert plan.seconds_per_step == pytest.approx(1.0) and plan.planned_at_step == 6
    assert plan.steps == 90


def test_probe_of_a_resumed_run_counts_from_its_first_step():
    plans = []
    probe = BudgetProbe(100.0, 0.0, 40, 1, 0, plans.append, warm=2, probe=4)
    for step in range(51, 60):  # resumed after 50 steps, before a plan was made
        probe.step_done(step, float(step - 50))
    assert len(plans) == 1 and plans[0].planned_at_step == 56
    assert plans[0].seconds_per_step == pytest.approx(1.0)


class _SteadyClock(BudgetProbe):
    """The probe on a simulated clock: 2 s to start, then 0.1 s per step."""

    def step_done(self, global_step, now):
        super().step_done(global_step, self.start + 2.0 + 0.1 * global_step)


def test_budgeted_run_plans_its_steps_and_its_repeat_gives_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(train_main, "BudgetProbe", _SteadyClock)
    budget = tmp_path / "budget"
    cfg = tiny_config(str(budget), warmup_epochs=10, time_budget_min=0.25, eval_every=3)
    result = train_main.main(cfg, datasets=_data(), collate=collate)

    plan = result["time_budget_plan"]
    steps = plan["steps"]
    # Warm-up covers 40 steps, so the probe times steps 5-35 and plans before the cosine.
    expected = plan_steps(
        budget_s=15.0,
        elapsed_s=2.0 + 3.5,
        done_steps=35,
        seconds_per_step=0.1,
        steps_per_epoch=4,
        eval_every=3,
        val_batches=3,
    )
    assert plan["seconds_per_step"] == pytest.approx(0.1)
    assert steps == expected.steps > 40 and plan["planned_at_step"] == 35
    assert result["steps"] == steps
    assert load_config(budget / "config.yaml").train.steps == steps  # recorded to repeat it
    rows = [json.loads(line) for line in (budget / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == math.ceil(steps / 4) and sum(r["steps"] for r in rows) == steps
    assert "AP50" in rows[-1]  # the last, possibly partial, epoch is validated
    last = load_checkpoint(budget / "last.pt")
    assert last["global_step"] == steps and last["plan"]["steps"] == steps
    # The schedule ended on the planned step: the learning rate reached its floor.
    assert rows[-1]["lr"] == pytest.approx(cfg.train.lr * 0.05, rel=1e-6)

    repeat = tmp_path / "repeat"
    cfg2 = tiny_config(str(repeat), warmup_epochs=10, steps=steps, eval_every=3)
    train_main.main(cfg2, datasets=_data(), collate=collate)
    a, b = last, load_checkpoint(repeat / "last.pt")
    for name, t in a["model_raw"].items():
        torch.testing.assert_close(b["model_raw"][name], t, rtol=0, atol=0, msg=name)


def test_explicit_steps_stop_part_way_through_an_epoch(tmp_path):
    cfg = tiny_config(str(tmp_path / "run"), steps=6)
    result = train_main.main(cfg, datasets=_data(), collate=collate)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["steps"] for r in rows] == [4, 2] and result["steps"] == 6
    assert result["images"] == 48


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"steps": 0}, "train.steps must be at least 1"),
        ({"time_budget_min": 0}, "train.time_budget_min must be positive"),
    ],
)
def test_bad_step_settings_are_clear_errors(tmp_path, train, message):
    with pytest.raises(ValueError, match=message):
        train_main.main(
            tiny_config(str(tmp_path / "run"), **train), datasets=_data(), collate=collate
        )
