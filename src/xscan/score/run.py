"""One scoring run: model + inputs -> RUN_DIR (results.jsonl, summary.csv, COCO, report).

``score(...)`` is what ``xscan score`` calls; it is also the Python API::

    from xscan.score.run import ScoreConfig, score
    result = score(ScoreConfig(model="model.onnx", inputs=["scans/"], out="runs/night1"))
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xscan.imageio import DEFAULT_MAX_PIXELS
from xscan.score.discover import DiscoveryStats, InputItem, count_inputs, iter_inputs
from xscan.score.overlay import overlay_path, render_result, write_overlay
from xscan.score.pipeline import Decoded, PipelineOptions, run_pipeline
from xscan.score.report import RunSummary, write_report
from xscan.score.store import ResultStore
from xscan.score.writers import write_coco, write_summary_csv

log = logging.getLogger(__name__)

# Test hook: seconds to sleep after each written batch, so a test can kill a run mid-way.
BATCH_DELAY_ENV = "XSCAN_SCORE_BATCH_DELAY_S"


@dataclass
class ScoreConfig:
    """Options of a scoring run. Only ``model``, ``inputs``, ``threshold``, ``max_pixels``,
    ``tiling`` and ``decode_margin`` change results; they form the run's identity (a resumed
    run must match it)."""

    model: str | None
    inputs: list[str]
    out: str
    batch_size: int = 8
    workers: int = 2
    provider: str | None = None
    threads: int | None = None
    overlays: bool = False
    engine: str = "local"
    threshold: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    tiling: str = "auto"
    restart: bool = False
    coco_gt: str | None = None
    progress: bool = True
    ray_address: str | None = None
    ray_actors: int = 0
    # Reduced JPEG decoding (``xscan.imageio.decode_image_scaled``): 0 = always full
    # resolution; M > 0 decodes at 1/2, 1/4 or 1/8 while >= M x the size in the input.
    decode_margin: float = 0.0


@dataclass
class ScoreResult:
    run_dir: Path
    report: Path
    summary: RunSummary
    session: dict[str, Any] = field(default_factory=dict)


def resolve_model_path(model: str | None) -> Path:
    """``None``/``default`` -> the shipped default model; otherwise the file named."""
    if model in (None, "", "default"):
        try:
            from xscan.runtime import default_model_path
        except ImportError as e:  # an older runtime without a shipped default
            raise FileNotFoundError(
                "no default model available in this install; name a model file"
            ) from e
        return Path(default_model_path())
    p = Path(model)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model file not found")
    return p


def identity(cfg: ScoreConfig, model_sha256: str, raw_pairs: bool) -> dict[str, Any]:
    return {
        "model_sha256": model_sha256,
        "inputs": [os.path.abspath(p) for p in cfg.inputs],
        "threshold": cfg.threshold,
        "max_pixels": cfg.max_pixels,
        "tiling": cfg.tiling,
        "decode_margin": cfg.decode_margin,
        "raw_pairs": raw_pairs,
    }


def _remaining(items: Iterator[InputItem], store: ResultStore) -> Iterator[InputItem]:
    """Skip the prefix already on disk (checking that it is still the same input)."""
    for item in items:
        if item.index < store.n_done:
            if item.index == store.n_done - 1:
                store.check_resume_point(item.index, item.path)
            continue
        yield item


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="img", desc="scoring", dynamic_ncols=True,
        disable=not enabled, file=sys.stderr, smoothing=0.1,
    )  # fmt: skip


def _make_sink(store: ResultStore, run_dir: Path, overlays: bool, bar, counters: dict[str, int]):
    delay = float(os.environ.get(BATCH_DELAY_ENV, "0") or 0)

    def sink(records: list[dict[str, Any]], decoded: list[Decoded]) -> None:
        if overlays:  # before the append, so every result on disk has its overlay
            for rec, d in zip(records, decoded, strict=True):
                if rec["status"] == "ok" and d.image is not None:
                    amap = getattr(d.prediction, "anomaly_map", None)
                    write_overlay(overlay_path(run_dir, rec), render_result(d.image, rec, amap))
                d.image = None
        store.append(records)
        for rec in records:
            counters["scored" if rec["status"] == "ok" else "failed"] += 1
            counters["alarms"] += bool(rec.get("alarm"))
        bar.update(len(records))
        bar.set_postfix(failed=counters["failed"], alarms=counters["alarms"], refresh=False)
        if delay:
            time.sleep(delay)

    return sink


def score(cfg: ScoreConfig) -> ScoreResult:
    """Score ``cfg.inputs`` into ``cfg.out``, resuming an interrupted run of the same identity."""
    from xscan.runtime import load_model

    if cfg.engine not in ("local", "ray"):
        raise ValueError(f"--engine: expected 'local' or 'ray', got {cfg.engine!r}")
    if cfg.batch_size < 1 or cfg.workers < 1:
        raise ValueError("--batch-size and --workers must be at least 1")
    for p in cfg.inputs:
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p}: no such file or folder")
    model_path = resolve_model_path(cfg.model)
    model = load_model(model_path, providers=cfg.provider, threads=cfg.threads, tiling=cfg.tiling)
    raw_pairs = model.spec.modality == "raw_dual"
    run_dir = Path(cfg.out)
    store = ResultStore(run_dir, identity(cfg, model.model_sha256, raw_pairs), cfg.restart)
    exclude = frozenset({os.path.realpath(run_dir)})  # never score our own overlays
    total = count_inputs(cfg.inputs, raw_pairs, exclude)
    resumed = store.n_done
    if resumed:
        log.info("resuming %s: %d of %d inputs already scored", run_dir, resumed, total)
    counters = {"scored": 0, "failed": 0, "alarms": 0}
    dstats = DiscoveryStats(exclude=exclude)
    items = _remaining(iter_inputs(cfg.inputs, raw_pairs, dstats), store)
    t0 = time.perf_counter()
    with _progress(total, resumed, cfg.progress) as bar:
        sink = _make_sink(store, run_dir, cfg.overlays, bar, counters)
        try:
            if cfg.engine == "ray":
                from xscan.score.ray_engine import run_ray

                stats = run_ray(model_path, items, sink, cfg)
            else:
                opts = PipelineOptions(
                    batch_size=cfg.batch_size,
                    workers=cfg.workers,
                    threshold=cfg.threshold,
                    max_pixels=cfg.max_pixels,
                    keep_images=cfg.overlays,
                    reduce_margin=cfg.decode_margin,
                )
                stats = run_pipeline(model, items, sink, opts)
        finally:
            wall = time.perf_counter() - t0
            session = {"engine": cfg.engine, **counters, "resumed_from": resumed}
            store.close(session)
    session.update(wall_s=wall, **{k: round(v, 3) for k, v in stats.items() if k != "wall_s"})
    if dstats.skipped_pairs:
        log.warning(
            "skipped %d raw dual-energy pair(s): the model reads %s images",
            dstats.skipped_pairs, model.spec.modality,
        )  # fmt: skip
    write_summary_csv(run_dir)
    write_coco(run_dir, list(model.spec.class_names), cfg.coco_gt)
    info = {
        "model_name": f"{model.spec.name} v{model.spec.version}",
        "model_path": str(model_path),
        "model_sha256": model.model_sha256,
        "task": model.spec.task,
    }
    report, summary = write_report(run_dir, info, model)
    return ScoreResult(run_dir, report, summary, session)
