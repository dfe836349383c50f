"""``main(cfg)``: the wiring of a detector training run.

Outputs in the run folder: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per epoch),
``tb/`` (TensorBoard), ``last.pt`` and ``best.pt`` (EMA weights under ``model``, raw weights
under ``model_raw``), and, at the end, operating points calibrated on the validation set's
benign scans stored in ``best.pt``'s spec.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xscan.config import ExperimentConfig, save_resolved
from xscan.metrics.alarm import operating_points
from xscan.metrics.detection import json_safe
from xscan.models import build_model
from xscan.models.centernet_loss import build_criterion
from xscan.train import distributed as D
from xscan.train.budget import BudgetProbe, StepPlan
from xscan.train.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from xscan.train.ema import ModelEMA
from xscan.train.engine import StepContext, evaluate, summary, train_one_epoch
from xscan.train.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_train_dataset(cfg: ExperimentConfig) -> Dataset:
    """The training mixture of ``cfg.data`` (``xscan.data.mixture``), with augmentation."""
    from xscan.data.mixture import build_dataset

    if not cfg.data.train:
        raise ValueError(f"{cfg.source}: data.train: at least one source is needed to train")
    return build_dataset(
        cfg.data.train,
        cfg.model,
        train=True,
        samples_per_epoch=cfg.data.samples_per_epoch,
        seed=cfg.seed,
        augment=cfg.data.augment,
        cache_images=cfg.data.cache_images,
    )


def build_datasets(cfg: ExperimentConfig) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets from ``cfg.data``."""
    return build_train_dataset(cfg), build_eval_dataset(cfg, "val")


def build_eval_dataset(cfg: ExperimentConfig, split: str) -> Dataset | None:
    """``cfg.data.val`` or ``cfg.data.test`` without augmentation (``None`` when empty);
    online sources give ``train.extra.eval_samples`` (default 256) fixed scans."""
    from xscan.data.mixture import build_dataset

    sources = getattr(cfg.data, split)
    if not sources:
        return None
    return build_dataset(
        sources,
        cfg.model,
        train=False,
        samples_per_epoch=int(cfg.train.extra.get("eval_samples", 256)),
        seed=cfg.seed + (1 if split == "val" else 2),
        augment={},
        cache_images=cfg.data.cache_images,
    )


def _collate():
    from xscan.data.torch_dataset import collate_detections

    return collate_detections


def make_loader(
    ds: Dataset, cfg: ExperimentConfig, info: D.DistInfo, train: bool, collate=None
) -> DataLoader:
    collate = collate or _collate()
    sampler = None
    generator = torch.Generator()
    if info.enabled and train:
        sampler = torch.utils.data.DistributedSampler(
            ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
        )
    return DataLoader(
        ds,
        batch_size=cfg.train.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        drop_last=train,
        generator=generator,
        persistent_workers=False,
        pin_memory=info.device.type == "cuda",
    )


def _precision(cfg: ExperimentConfig, device: torch.device):
    """(autocast dtype, GradScaler) for the device and config."""
    if device.type == "cuda" and cfg.train.amp:
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")
    if device.type == "cpu" and cfg.train.bf16_cpu:
        return torch.bfloat16, None
    return None, None


def load_init_weights(model: torch.nn.Module, path: str) -> None:
    """Load local weights (a checkpoint or a bare state dict); backbone-only files are fine."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"train.init_weights: {p} not found")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"train.init_weights: {p} has no tensor matching this model's names")
    model.load_state_dict({**own, **usable})
    log.info("init_weights: loaded %d/%d tensors from %s", len(usable), len(own), p)


class Run:
    """State of one training run (kept together so functions stay short)."""

    def __init__(self, cfg: ExperimentConfig, info: D.DistInfo, out: Path):
        self.cfg, self.info, self.out = cfg, info, out
        self.spec = cfg.model
        seed_everything(cfg.seed)
        self.model = build_model(self.spec)
        if cfg.train.init_weights:
            load_init_weights(self.model, cfg.train.init_weights)
        if info.enabled and info.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(info.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.criterion = build_criterion(self.model)
        self.optimizer = build_optimizer(self.model, cfg.train.lr, cfg.train.weight_decay)
        self.ema = (
            ModelEMA(self.model, cfg.train.ema_decay, float(cfg.train.extra.get("ema_tau", 500)))
            if cfg.train.ema
            else None
        )
        self.train_model = self.model
        if info.enabled:
            ids = [info.device.index] if info.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, ids)
        self.start_epoch = 0
        self.global_step = 0
        self.plan: StepPlan | None = None
        self.wall_seconds = 0.0
        self.best = -1.0
        self.history: list[dict[str, Any]] = []

    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def payload(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.eval_model().state_dict(),
            "model_raw": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "best_metric": self.best,
            "metrics": json_safe(metrics),
            "spec": self.spec,
            "config": self.cfg.to_dict(),
        }

    def resume(self, path: str | Path, steps_per_epoch: int) -> None:
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["model_raw"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.start_epoch = int(ckpt["epoch"])
        # Checkpoints written before step counting: whole epochs of `steps_per_epoch`.
        self.global_step = int(ckpt.get("global_step", self.start_epoch * steps_per_epoch))
        if ckpt.get("plan"):
            self.plan = StepPlan(**ckpt["plan"])
        self.best = float(ckpt.get("best_metric", -1.0))
        log.info("resumed from %s after epoch %d", path, self.start_epoch)


def main(
    cfg: ExperimentConfig,
    *,
    resume: str | Path | None = None,
    out_dir: str | Path | None = None,
    datasets: tuple[Dataset, Dataset | None] | None = None,
    collate=None,
) -> dict[str, Any]:
    """Train ``cfg``; returns the final summary (also written to ``summary.json``).

    ``datasets`` (train, val) replaces the datasets built from ``cfg.data`` (for tests and
    notebooks); ``collate`` their collate function.
    """
    if cfg.model.task != "detect":
        raise ValueError(f"{cfg.source}: model.task is {cfg.model.task!r}; this trains detectors")
    info = D.init_distributed(cfg.train.device)
    try:
        return _train(cfg, info, Path(out_dir or cfg.train.out_dir), resume, datasets, collate)
    finally:
        D.cleanup(info)


def _train(cfg, info, out, resume, datasets, collate) -> dict[str, Any]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, out / "config.yaml")
    train_set, val_set = datasets if datasets is not None else build_datasets(cfg)
    train_loader = make_loader(train_set, cfg, info, True, collate)
    val_loader = make_loader(val_set, cfg, info, False, collate) if val_set is not None else None
    run = Run(cfg, info, out)
    run.datasets_from_config = datasets is None
    run.has_val = val_loader is not None
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{cfg.source}: data: fewer training samples than one batch")
    total_steps = _fixed_steps(cfg, steps_per_epoch)
    run.scheduler = build_scheduler(
        run.optimizer,
        total_steps or PROVISIONAL_STEPS,
        int(round(cfg.train.warmup_epochs * steps_per_epoch)),
        float(cfg.train.extra.get("min_lr_factor", 0.05)),
    )
    if resume:
        run.resume(resume, steps_per_epoch)
        if run.plan is not None and total_steps is None:
            total_steps = cfg.train.steps = run.plan.steps
            if info.is_main:
                save_resolved(cfg, out / "config.yaml")
    start = time.perf_counter()
    amp_dtype, scaler = _precision(cfg, info.device)
    deadline = (
        time.monotonic() + cfg.train.time_limit_min * 60 if cfg.train.time_limit_min else None
    )
    ctx = StepContext(
        info.device,
        amp_dtype,
        scaler,
        cfg.train.grad_clip,
        run.ema,
        deadline,
        cfg.train.log_every,
        progress=info.is_main and sys.stderr.isatty(),
        channels_last=cfg.train.channels_last,
        global_step=run.global_step,
        stop_at_step=total_steps,
    )
    if total_steps is None:  # a time budget: plan the steps after a short speed probe
        ctx.on_step = _budget_probe(cfg, run, ctx, start, steps_per_epoch, val_loader).step_done
    writer = _tensorboard(out) if info.is_main else None
    totals = {"images": 0, "seconds": 0.0, "data_seconds": 0.0, "cpu_seconds": 0.0}
    epoch = run.start_epoch
    while ctx.stop_at_step is None or ctx.global_step < ctx.stop_at_step:
        _seed_epoch(cfg.seed, epoch, train_loader)
        stats = train_one_epoch(
            run.train_model, run.criterion, train_loader, run.optimizer, run.scheduler, ctx, epoch
        )
        run.global_step = ctx.global_step
        totals["images"] += stats["images"] * info.world_size
        totals["seconds"] += stats["seconds"]
        totals["cpu_seconds"] += stats["cpu_seconds"]
        totals["data_seconds"] += stats["data_wait_share"] * stats["seconds"]
        planned_end = ctx.stop_at_step is not None and ctx.global_step >= ctx.stop_at_step
        last = planned_end or stats["stopped_early"]
        metrics = {}
        if (
            info.is_main
            and val_loader is not None
            and (last or (epoch + 1) % cfg.train.eval_every == 0)
        ):
            metrics = evaluate(
                run.eval_model(), val_loader, run.spec, info.device, cfg.eval.far_targets
            )
        _end_epoch(run, epoch, stats, metrics, writer)
        D.barrier(info)
        if stats["stopped_early"]:
            log.warning(
                "train.time_limit_min (%.1f) reached during epoch %d; stopping",
                cfg.train.time_limit_min,
                epoch,
            )
            break
        epoch += 1
    run.wall_seconds = time.perf_counter() - start
    if writer is not None:
        writer.close()
    result = {}
    if info.is_main:
        result = _finish(run, totals, val_loader)
    D.barrier(info)
    return result


PROVISIONAL_STEPS = 10**9  # the schedule's length until a time budget is planned


def _fixed_steps(cfg: ExperimentConfig, steps_per_epoch: int) -> int | None:
    """The run's optimiser steps when the config fixes them (``train.steps``, else ``epochs``);
    ``None`` when ``train.time_budget_min`` is to decide."""
    t = cfg.train
    if t.steps is not None:
        if t.steps < 1:
            raise ValueError(f"{cfg.source}: train.steps must be at least 1, got {t.steps}")
        return int(t.steps)
    if t.time_budget_min is not None:
        if t.time_budget_min <= 0:
            raise ValueError(
                f"{cfg.source}: train.time_budget_min must be positive, got {t.time_budget_min}"
            )
        return None
    if t.epochs < 1:
        raise ValueError(f"{cfg.source}: train.epochs must be at least 1, got {t.epochs}")
    return steps_per_epoch * t.epochs


def _budget_probe(cfg, run: Run, ctx: StepContext, start: float, steps_per_epoch, val_loader):
    """A :class:`BudgetProbe` that, once it has planned, sets the schedule's length and the
    context's last step, and records the plan in the run and its resolved config."""

    def on_plan(plan: StepPlan) -> None:
        plan.steps = D.broadcast_int(plan.steps, run.info)  # every rank stops together
        for fn in run.scheduler.lr_lambdas:
            fn.total_steps = plan.steps
        ctx.stop_at_step = plan.steps
        run.plan = plan
        if run.info.is_main:
            cfg.train.steps = plan.steps
            save_resolved(cfg, run.out / "config.yaml")

    # Plan before the cosine starts, so that the budgeted run and its repeat with
    # `train.steps` see the same learning rates (warm-up rates do not depend on the length).
    warmup_steps = run.scheduler.lr_lambdas[0].warmup_steps
    probe = min(BudgetProbe.PROBE, warmup_steps - BudgetProbe.WARM)
    if probe < 10:
        probe = BudgetProbe.PROBE
        log.warning(
            "train.warmup_epochs covers %d steps, fewer than the time-budget probe's %d: "
            "repeating this run with --set train.steps will not be bit-exact",
            warmup_steps,
            BudgetProbe.WARM + probe,
        )
    return BudgetProbe(
        cfg.train.time_budget_min * 60,
        start,
        steps_per_epoch,
        cfg.train.eval_every,
        # With spec.scan_views > 1 a validation batch runs the network once per view.
        len(val_loader) * run.spec.scan_views if val_loader is not None and run.info.is_main else 0,
        on_plan,
        probe=probe,
    )


def _seed_epoch(seed: int, epoch: int, loader: DataLoader) -> None:
    """Per-epoch seeds make an interrupted run resume to the same result."""
    seed_everything(seed * 1000 + epoch)
    loader.generator.manual_seed(seed * 1000 + epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
        loader.sampler.set_epoch(epoch)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        log.warning("tensorboard not installed; metrics go to metrics.jsonl only")
        return None
    return SummaryWriter(str(out / "tb"))


def _end_epoch(run: Run, epoch: int, stats: dict, metrics: dict, writer) -> None:
    if not run.info.is_main:
        return
    flat = summary(metrics) if metrics else {}
    row = {"epoch": epoch + 1, **{k: v for k, v in stats.items()}, **flat}
    run.history.append(row)
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(json_safe(row)) + "\n")
    if writer is not None:
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                writer.add_scalar(k if k in flat else f"train/{k}", v, epoch + 1)
    key = flat.get("AP50", flat.get("auroc", float("nan")))
    payload = run.payload(epoch + 1, {k: v for k, v in metrics.items() if k != "records"})
    save_checkpoint(run.out / "last.pt", **payload)
    # best.pt: the best evaluated epoch (AP50, or AUROC without boxes); the latest epoch when
    # there is no validation data; the first epoch until an evaluation happens.
    improved = bool(metrics) and np.isfinite(key) and key > run.best
    if improved or not run.has_val or not (run.out / "best.pt").exists():
        if improved:
            run.best = float(key)
            payload["best_metric"] = run.best
        save_checkpoint(run.out / "best.pt", **payload)
    log.info(
        "epoch %d: %s",
        epoch + 1,
        ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k not in ("lr",)
        ),
    )


def calibrate_spec(spec, metrics: dict[str, Any], far_targets, default_far: float, source: str):
    """``spec`` with operating points calibrated on the benign scans in ``metrics``'s records
    and a metric summary in ``spec.info["metrics"]``."""
    from xscan.metrics.alarm import far_name

    gts, _ = metrics["records"]
    scores = np.array([g["image_score"] for g in gts])
    threat = np.array([g["is_threat"] for g in gts], bool)
    if not (~threat).any():
        raise ValueError(f"{source}: no benign scans to calibrate false-alarm thresholds on")
    points = operating_points(scores[~threat], far_targets, scores[threat], source=source)
    names = [p.name for p in points]
    default = far_name(default_far)
    info = {**spec.info, "metrics": json_safe(summary(metrics))}
    return spec.replace(info=info).with_operating_points(
        points, default=default if default in names else None
    )


def _finish(run: Run, totals: dict[str, float], val_loader) -> dict[str, Any]:
    cfg, out = run.cfg, run.out
    best = load_checkpoint(out / "best.pt")
    model = build_model(best["spec"])
    model.load_state_dict(best["model"])
    model.to(run.info.device)
    result: dict[str, Any] = {
        "images": int(totals["images"]),
        "train_seconds": round(totals["seconds"], 1),
        "train_cpu_seconds": round(totals["cpu_seconds"], 1),
        "images_per_s": totals["images"] / max(totals["seconds"], 1e-9),
        "data_wait_share": totals["data_seconds"] / max(totals["seconds"], 1e-9),
        "epochs": len(run.history),
        "steps": run.global_step,
        "best_epoch": int(best["epoch"]),
        # wall clock of the epoch loop: training steps and validation passes
        "train_and_val_seconds": round(run.wall_seconds, 1),
    }
    if run.plan is not None:
        result["time_budget_plan"] = run.plan.to_dict()
    spec = best["spec"]
    if val_loader is not None:
        metrics = evaluate(model, val_loader, spec, run.info.device, cfg.eval.far_targets)
        spec = calibrate_spec(
            spec,
            metrics,
            cfg.eval.far_targets,
            cfg.eval.default_far,
            source="validation benign scans",
        )
        result["val"] = json_safe(summary(metrics))
        result["operating_points"] = {p.name: p.threshold for p in spec.operating_points}
    else:
        log.warning("no data.val: best.pt has no calibrated operating points")
    test_set = build_eval_dataset(cfg, "test") if run.datasets_from_config else None
    if test_set is not None:
        loader = make_loader(test_set, cfg, run.info, False)
        test = evaluate(model, loader, spec, run.info.device, cfg.eval.far_targets)
        result["test"] = json_safe(summary(test))
    spec = spec.replace(
        weights_sha256=weights_sha256(best["model"]),
        info={**spec.info, "config": cfg.name, "training": json_safe(result)},
    )
    best["spec"] = spec
    save_checkpoint(out / "best.pt", **best)
    (out / "summary.json").write_text(json.dumps(json_safe(result), indent=2))
    log.info("done: %s", json.dumps(json_safe(result)))
    return result
