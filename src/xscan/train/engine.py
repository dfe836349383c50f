"""One training epoch and one evaluation pass, as plain functions.

Batches are ``(images (B, C, H, W) float32 in [0, 1], targets)`` with ``targets`` a list of
dicts (``boxes`` (N, 4) xyxy input pixels, ``labels`` (N,) int64, ``image_id``, ``is_threat``,
``letterbox``, ...), as produced by ``xscan.data.torch_dataset.collate_detections``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xscan.metrics.alarm import alarm_metrics, sliced_alarm_metrics
from xscan.metrics.detection import coco_metrics
from xscan.metrics.slices import conspicuous_coco, scan_slices
from xscan.models.inference import build_inference_module
from xscan.preprocess import LetterboxInfo, scan_scores_from_views
from xscan.spec import ModelSpec

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


@dataclass
class StepContext:
    """What a training step needs besides the model and data."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float = 0.0
    ema: Any = None
    deadline: float | None = None  # time.monotonic() after which the epoch ends early
    log_every: int = 10
    progress: bool = False
    channels_last: bool = False  # batches in NHWC, like the model (train.channels_last)
    global_step: int = 0  # optimiser steps done in the whole run (advanced by each step)
    stop_at_step: int | None = None  # the epoch ends when global_step reaches this
    on_step: Callable[[int, float], None] | None = None  # (global_step, perf_counter) per step
    extra: dict[str, Any] = field(default_factory=dict)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(
    images: torch.Tensor, targets: list[dict], device: torch.device, channels_last: bool = False
):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True, memory_format=fmt)
    targets = [
        {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
        for t in targets
    ]
    return images, targets


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    ctx: StepContext,
    epoch: int,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean losses, images/s and the share of the
    epoch spent waiting for data. Raises :class:`NonFiniteLossError` on a NaN/inf loss."""
    from tqdm import tqdm

    model.train()
    sums: dict[str, float] = {}
    n_steps = n_images = 0
    data_time = 0.0
    start = t_last = time.perf_counter()
    cpu_start = time.process_time()  # this process's CPU time: honest on a shared machine
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not ctx.progress, leave=False)
    stopped_early = False
    for step, (images, targets) in enumerate(bar):
        data_time += time.perf_counter() - t_last
        images, targets = _to_device(images, targets, ctx.device, ctx.channels_last)
        with autocast(ctx.device, ctx.amp_dtype):
            outputs = model(images)
        losses = criterion(outputs, targets)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"epoch {epoch}, step {step}: the loss is not finite ({parts}); lower train.lr "
                f"(now {optimizer.param_groups[0]['lr']:.3g}) or train.grad_clip, or check the "
                "data for degenerate boxes"
            )
        optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is not None:
            ctx.scaler.scale(loss).backward()
            ctx.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if ctx.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), ctx.grad_clip)
        if ctx.scaler is not None:
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if ctx.ema is not None:
            ctx.ema.update(model)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n_steps += 1
        n_images += images.shape[0]
        now = time.perf_counter()
        if ctx.progress:
            bar.set_postfix(
                loss=f"{sums['loss'] / n_steps:.3f}", img_s=f"{n_images / (now - start):.1f}"
            )
        elif ctx.log_every and step % ctx.log_every == 0:
            log.info(
                "epoch %d step %d loss %.4f (%.1f img/s)",
                epoch,
                step,
                sums["loss"] / n_steps,
                n_images / max(now - start, 1e-9),
            )
        t_last = time.perf_counter()
        ctx.global_step += 1
        if ctx.on_step is not None:
            ctx.on_step(ctx.global_step, t_last)
        if ctx.stop_at_step is not None and ctx.global_step >= ctx.stop_at_step:
            break  # the planned end of the run (train.steps or train.time_budget_min)
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            stopped_early = True
            break
    bar.close()
    seconds = time.perf_counter() - start
    out = {k: v / max(n_steps, 1) for k, v in sums.items()}
    out.update(
        steps=n_steps,
        images=n_images,
        seconds=seconds,
        cpu_seconds=time.process_time() - cpu_start,
        images_per_s=n_images / max(seconds, 1e-9),
        data_wait_share=data_time / max(seconds, 1e-9),
        lr=optimizer.param_groups[0]["lr"],
        stopped_early=stopped_early,
    )
    return out


def _letterbox(t: dict[str, Any]) -> LetterboxInfo | None:
    lb = t.get("letterbox")
    if lb is None or isinstance(lb, LetterboxInfo):
        return lb
    if isinstance(lb, dict):
        return LetterboxInfo(**lb)
    if isinstance(lb, (list, tuple, torch.Tensor, np.ndarray)):
        # (scale_x, scale_y, pad_x, pad_y) with the original size in "orig_size" (H, W)
        v = [float(x) for x in (lb.tolist() if hasattr(lb, "tolist") else lb)]
        if len(v) == 4:
            if t.get("orig_size") is None:
                raise ValueError("target has a 4-value 'letterbox' but no 'orig_size'")
            v += [float(x) for x in t["orig_size"]]
        return LetterboxInfo(v[0], v[1], v[2], v[3], int(v[4]), int(v[5]))
    raise ValueError(f"target 'letterbox': unsupported type {type(lb).__name__}")


def _original_size(t: dict[str, Any], lb: LetterboxInfo | None, input_hw) -> tuple[int, int]:
    if lb is not None:
        return lb.orig_h, lb.orig_w
    if t.get("orig_size") is not None:
        h, w = (int(x) for x in t["orig_size"])
        return h, w
    return int(input_hw[0]), int(input_hw[1])


@torch.no_grad()
def predict(
    model: nn.Module, loader, spec: ModelSpec, device: torch.device, amp_dtype=None
) -> tuple[list[dict], list[dict]]:
    """Run ``model`` over ``loader``; returns ground truths and predictions per image in
    *original-image* pixels (mapped back through each target's letterbox) for
    :func:`xscan.metrics.detection.coco_metrics`, plus ``image_score`` (the highest detection
    score; with ``spec.scan_views`` > 1 the scan score of
    :func:`xscan.preprocess.scan_scores_from_views`), ``is_threat`` and slicing
    attributes on each ground-truth record. Detections and scores are those of the inference
    module that gets exported (:func:`xscan.models.build_inference_module`)."""
    model.eval()
    # What the exported graph computes (with every candidate box kept for AP).
    infer = build_inference_module(model, spec, score_threshold=0.0).to(device)
    gts, preds = [], []
    for images, targets in loader:
        images = images.to(device)
        with autocast(device, amp_dtype):
            outs = infer(images)
        boxes, scores, classes = (o.float().cpu().numpy() for o in outs[:3])
        classes = classes.astype(np.int64)
        if spec.scan_views > 1:
            # As the runtime: the mean over views of each view's top score.
            views = outs[4].float().cpu().numpy()
            image_scores = scan_scores_from_views(views, spec.score_threshold)
        else:
            image_scores = scores.max(axis=1, initial=0.0)
        for b, t in enumerate(targets):
            lb = _letterbox(t)
            keep = scores[b] > 1e-3
            pb = boxes[b][keep]
            gb = t["boxes"].cpu().numpy().reshape(-1, 4) if "boxes" in t else np.zeros((0, 4))
            if lb is not None:
                pb, gb = lb.boxes_to_original(pb), lb.boxes_to_original(gb)
            h, w = _original_size(t, lb, spec.input_size)
            iid = len(gts) + 1
            gts.append(_gt_record(t, iid, gb, h, w, float(image_scores[b])))
            preds.append(
                {
                    "image_id": iid,
                    "boxes": pb,
                    "scores": scores[b][keep],
                    "labels": classes[b][keep],
                }
            )
    return gts, preds


def _gt_record(t: dict[str, Any], iid: int, boxes: np.ndarray, h: int, w: int, score: float):
    labels = t["labels"].cpu().numpy().reshape(-1) if "labels" in t else np.zeros(0, np.int64)
    is_threat = t.get("is_threat")
    if isinstance(is_threat, torch.Tensor):
        is_threat = bool(is_threat.item())
    if is_threat is None:
        is_threat = bool(len(labels))
    occ = t.get("occlusion_level")
    if isinstance(occ, torch.Tensor):
        occ = occ.cpu().numpy().reshape(-1)
    return {
        "image_id": iid,
        "boxes": boxes,
        "labels": labels,
        "height": h,
        "width": w,
        "image_score": score,
        "is_threat": bool(is_threat),
        "has_boxes": bool(t.get("has_boxes", True)),
        "subset": t.get("subset"),
        "occlusion_level": int(np.max(occ)) if occ is not None and len(occ) else None,
        "path": t.get("path"),
    }


def evaluate(
    model: nn.Module,
    loader,
    spec: ModelSpec,
    device: torch.device,
    far_targets: list[float] | tuple[float, ...] = (0.01, 0.05, 0.10),
    amp_dtype=None,
) -> dict[str, Any]:
    """COCO metrics (when the data has boxes) and bag-level alarm metrics; with the scan
    records of ``loader.dataset`` (offline datasets, in order), also the slices and the COCO
    metrics over the threats that show (:func:`metrics_from_predictions`).

    Returns ``{"coco": {...} | None, "coco_conspicuous": {...} | None, "alarm": {...},
    "sliced": {...}, "records": (gts, preds)}``.
    """
    gts, preds = predict(model, loader, spec, device, amp_dtype)
    records = getattr(loader.dataset, "records", None)
    if records is not None and len(records) != len(gts):
        records = None
    return metrics_from_predictions(gts, preds, spec.class_names, far_targets, records)


def metrics_from_predictions(
    gts: list[dict], preds: list[dict], class_names, far_targets, records=None
) -> dict[str, Any]:
    """Metrics of :func:`evaluate` from predictions. ``records``: the scan records behind
    ``gts``, in order; their subsets, occlusion levels, threat classes and conspicuities
    (:func:`xscan.metrics.slices.scan_slices`) slice the bag-level metrics, and objects with a
    conspicuity give ``coco_conspicuous`` (AP over the threats that show)."""
    if records is not None:
        for g, s in zip(gts, scan_slices(records, class_names), strict=True):
            g.update(s)
    boxed = [i for i, g in enumerate(gts) if g.get("has_boxes", True)]
    coco = shown = None
    if boxed and any(len(gts[i]["labels"]) for i in boxed):
        coco = coco_metrics([gts[i] for i in boxed], [preds[i] for i in boxed], class_names)
        shown = conspicuous_coco(gts, preds, class_names)
    scores = np.array([g["image_score"] for g in gts], np.float64)
    threat = np.array([g["is_threat"] for g in gts], bool)
    alarm = alarm_metrics(scores, threat, far_targets)
    groups = {}
    for key in ("subset", "occlusion_level", "visibility"):
        values = [g.get(key) for g in gts]
        if len({v for v in values if v is not None}) > 1:
            groups[key] = values
    # The threat classes each scan holds (it counts under each), and its class when they are
    # all one class: what that class alone is detected at.
    held = [tuple(g.get("threat_class") or ()) for g in gts]
    if any(held):
        groups["threat_class"] = held
        groups["only_class"] = [c[0] if len(c) == 1 else None for c in held]
    sliced = sliced_alarm_metrics(scores, threat, groups, far_targets) if groups else {}
    return {
        "coco": coco,
        "coco_conspicuous": shown,
        "alarm": alarm,
        "sliced": sliced,
        "records": (gts, preds),
    }


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    """Flat scalar metrics for logs: ``mAP``, ``AP50``, ``AP50_any_class``, over the threats
    that show ``AP50_shows`` and ``AP50_any_class_shows`` (where objects carry a conspicuity),
    ``auroc``, ``dr@far5``, ..."""
    out: dict[str, float] = {}
    if metrics.get("coco"):
        out["mAP"] = metrics["coco"]["mAP"]
        out["AP50"] = metrics["coco"]["AP50"]
        out["AP50_any_class"] = metrics["coco"]["AP50_any_class"]
    if metrics.get("coco_conspicuous"):
        out["AP50_shows"] = metrics["coco_conspicuous"]["AP50"]
        out["AP50_any_class_shows"] = metrics["coco_conspicuous"]["AP50_any_class"]
    alarm = metrics["alarm"]
    out["auroc"] = alarm["auroc"]
    for name, r in alarm.get("at_far", {}).items():
        out[f"dr@{name}"] = r["detection_rate"]
    return {
        k: (float(v) if v is not None and math.isfinite(v) else float("nan"))
        for k, v in out.items()
    }
