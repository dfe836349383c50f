"""Fit a training run to a wall-clock budget (``train.time_budget_min``).

The same recipe trains 1.5-2x faster on one 2-core machine than on another (docs/benchmarks.md,
"Detector training"). A fixed number of epochs then either leaves budget unused or is cut off
by ``train.time_limit_min`` before the learning rate has annealed. A budgeted run instead
measures its own speed over a short probe early in the first epoch, while the learning rate is
still warming up, and fixes the number of optimiser steps so that the training steps and the
validation passes end within the budget; the cosine schedule then ends exactly on the last
step (the budgeted-training idea of Li et al., ICLR 2020). Ultralytics' ``time=`` instead
re-plans its epoch count and schedule from the mean epoch time after every epoch; planning
once keeps the schedule fixed, so the run can be repeated exactly.

The plan is written into the run's resolved ``config.yaml`` as ``train.steps``, so the same
command with that file repeats the run exactly; two budgeted runs on one machine may differ
by a quarter of an epoch when their measured speeds differ.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

# An evaluation pass costs about this share of a training step per batch (forward only, no
# gradient: ~45 % of a step in a profile of the default detector), plus a fixed cost per pass
# for the COCO evaluation and the loader start.
EVAL_STEP_SHARE = 0.5
EVAL_PASS_OVERHEAD_S = 1.0
# Starting an epoch (loader workers, first batch) costs time the steady-state probe misses.
EPOCH_OVERHEAD_S = 1.0


@dataclass
class StepPlan:
    """The outcome of a budget probe (stored in checkpoints and ``summary.json``)."""

    steps: int
    budget_s: float
    seconds_per_step: float
    eval_pass_s: float  # estimated
    eval_passes: int
    planned_at_step: int
    elapsed_at_plan_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def count_eval_passes(total_steps: int, steps_per_epoch: int, eval_every: int) -> int:
    """Validation passes of a run of ``total_steps``: every ``eval_every`` epochs and after the
    last (possibly partial) epoch."""
    return math.ceil(math.ceil(total_steps / steps_per_epoch) / max(1, int(eval_every)))


def plan_steps(
    *,
    budget_s: float,
    elapsed_s: float,
    done_steps: int,
    seconds_per_step: float,
    steps_per_epoch: int,
    eval_every: int,
    val_batches: int,
    quantum: int | None = None,
) -> StepPlan:
    """The largest step count, rounded down to ``quantum`` (default a quarter epoch), whose
    remaining steps and validation passes fit in ``budget_s - elapsed_s``; never fewer than
    ``done_steps``."""
    if seconds_per_step <= 0:
        raise ValueError(f"seconds_per_step must be positive, got {seconds_per_step}")
    quantum = max(1, quantum or steps_per_epoch // 4)
    eval_s = (
        val_batches * seconds_per_step * EVAL_STEP_SHARE + EVAL_PASS_OVERHEAD_S
        if val_batches
        else 0.0
    )
    remaining = budget_s - elapsed_s

    def cost(total: int) -> float:
        passes = count_eval_passes(total, steps_per_epoch, eval_every) if eval_s else 0
        new_epochs = math.ceil(total / steps_per_epoch) - math.ceil(done_steps / steps_per_epoch)
        return (
            (total - done_steps) * seconds_per_step
            + passes * eval_s
            + new_epochs * EPOCH_OVERHEAD_S
        )

    total = done_steps + max(0, int(remaining / seconds_per_step))
    total = (total // quantum) * quantum
    while total > done_steps and cost(total) > remaining:
        total -= quantum
    total = max(total, done_steps, 1)
    passes = count_eval_passes(total, steps_per_epoch, eval_every) if eval_s else 0
    return StepPlan(
        steps=int(total),
        budget_s=float(budget_s),
        seconds_per_step=float(seconds_per_step),
        eval_pass_s=float(eval_s),
        eval_passes=int(passes),
        planned_at_step=int(done_steps),
        elapsed_at_plan_s=float(elapsed_s),
    )


class BudgetProbe:
    """Times steps ``warm .. warm + probe`` and then calls ``on_plan(StepPlan)`` once.

    ``step_done(global_step, now)`` is called after every optimiser step with the number of
    steps done so far and ``time.perf_counter()``; ``start`` is the run's start on that clock.
    Steps count from this process's first one, so a run resumed before it had planned plans
    too.
    """

    WARM, PROBE = 5, 30

    def __init__(
        self,
        budget_s: float,
        start: float,
        steps_per_epoch: int,
        eval_every: int,
        val_batches: int,
        on_plan,
        warm: int = WARM,
        probe: int = PROBE,
    ):
        self.budget_s, self.start = float(budget_s), float(start)
        self.steps_per_epoch, self.eval_every = int(steps_per_epoch), int(eval_every)
        self.val_batches = int(val_batches)
        self.on_plan = on_plan
        self.warm, self.probe = int(warm), int(probe)
        self._t0: float | None = None
        self._base: int | None = None  # steps done before this process (a resumed run)
        self.plan: StepPlan | None = None

    def step_done(self, global_step: int, now: float) -> None:
        if self.plan is not None:
            return
        if self._base is None:
            self._base = global_step - 1
        if global_step == self._base + self.warm:
            self._t0 = now
        elif self._t0 is not None and global_step == self._base + self.warm + self.probe:
            self.plan = plan_steps(
                budget_s=self.budget_s,
                elapsed_s=now - self.start,
                done_steps=global_step,
                seconds_per_step=(now - self._t0) / self.probe,
                steps_per_epoch=self.steps_per_epoch,
                eval_every=self.eval_every,
                val_batches=self.val_batches,
            )
            log.info(
                "time budget %.1f min: %.3f s/step measured over steps %d-%d; planned %d steps "
                "(%.2f epochs) and %d validation passes (~%.0f s each); to repeat exactly: "
                "--set train.steps=%d",
                self.budget_s / 60,
                self.plan.seconds_per_step,
                self.warm,
                global_step,
                self.plan.steps,
                self.plan.steps / self.steps_per_epoch,
                self.plan.eval_passes,
                self.plan.eval_pass_s,
                self.plan.steps,
            )
            self.on_plan(self.plan)
