"""``--engine ray``: the same scoring on a Ray cluster with Ray Data.

Discovery stays on the driver and streams inputs in chunks (``CHUNK`` at a time, so the
driver's memory does not grow with the folder); each chunk is a ``ray.data`` dataset mapped
with :class:`RayScorer`, a callable class holding one onnxruntime session per actor, which
reads, decodes, preprocesses and scores its batches exactly as the local pipeline does
(same functions). Results come back to the driver and go through the same result store, in
input order, so a Ray run resumes like a local one and writes the same results.

On a multi-node cluster the input paths (and ``--out`` for overlays) must be visible to every
node under the same path (a shared file system); the model travels in the object store.
Connect with ``--ray-address ray://head:10001`` or ``RAY_ADDRESS``; without either, a local
Ray instance is started.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xscan.score.discover import InputItem
from xscan.score.pipeline import Decoded, _score, decode_item

log = logging.getLogger(__name__)

CHUNK = 4096


class RayScorer:
    """Ray Data ``map_batches`` callable: one model session per actor.

    Input batch (numpy format): ``index`` int64, ``path`` str, ``files`` JSON list of str.
    Output batch: ``index`` int64 and ``record`` (the results.jsonl line as JSON text).
    """

    def __init__(
        self,
        model_bytes: bytes,
        providers: str | None,
        threads: int | None,
        threshold: float | None,
        max_pixels: int,
        overlays_dir: str | None,
        tiling: str = "auto",
        decode_margin: float = 0.0,
    ):
        from xscan.runtime import load_model

        fd, path = tempfile.mkstemp(suffix=".onnx", prefix="xscan-ray-")
        with os.fdopen(fd, "wb") as f:
            f.write(model_bytes)
        self.model = load_model(path, providers=providers, threads=threads or 1, tiling=tiling)
        os.unlink(path)
        self.threshold, self.max_pixels = threshold, max_pixels
        self.overlays_dir = overlays_dir
        self.decode_margin = decode_margin

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        keep = self.overlays_dir is not None
        decoded = [
            decode_item(
                InputItem(int(i), str(p), tuple(json.loads(str(f)))),
                self.model,
                self.max_pixels,
                keep,
                self.decode_margin,
            )
            for i, p, f in zip(batch["index"], batch["path"], batch["files"], strict=True)
        ]
        records, decoded = _score(self.model, decoded, self.threshold, keep)
        if keep:
            _write_overlays(self.overlays_dir, records, decoded)
        return {
            "index": [r["index"] for r in records],
            "record": [json.dumps(r, separators=(",", ":")) for r in records],
        }


def _write_overlays(run_dir: str, records: list[dict[str, Any]], decoded: list[Decoded]) -> None:
    from xscan.score.overlay import overlay_path, render_result, write_overlay

    for rec, d in zip(records, decoded, strict=True):
        if rec["status"] == "ok" and d.image is not None:
            amap = getattr(d.prediction, "anomaly_map", None)
            write_overlay(overlay_path(run_dir, rec), render_result(d.image, rec, amap))


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, log_to_driver=False)


def run_ray(
    model_path: str | Path,
    items: Iterator[InputItem],
    sink: Callable[[list[dict[str, Any]], list[Decoded]], None],
    cfg: Any,
) -> dict[str, float]:
    """Score ``items`` on Ray; ``sink`` gets each batch's records in input order."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ValueError("--engine ray needs Ray Data: pip install 'xscan[ray]'") from e
    _init_ray(cfg.ray_address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    actors = cfg.ray_actors or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
    model_bytes = Path(model_path).read_bytes()
    kwargs = {
        "model_bytes": model_bytes,
        "providers": cfg.provider,
        "threads": cfg.threads,
        "threshold": cfg.threshold,
        "max_pixels": cfg.max_pixels,
        "overlays_dir": str(Path(cfg.out).resolve()) if cfg.overlays else None,
        "tiling": cfg.tiling,
        "decode_margin": cfg.decode_margin,
    }
    n = 0
    while True:
        chunk = list(itertools.islice(items, CHUNK))
        if not chunk:
            break
        rows = [{"index": it.index, "path": it.path, "files": json.dumps(it.files)} for it in chunk]
        ds = ray.data.from_items(rows).map_batches(
            RayScorer,
            fn_constructor_kwargs=kwargs,
            batch_size=cfg.batch_size,
            batch_format="numpy",
            concurrency=min(actors, max(1, len(chunk) // cfg.batch_size)),
            num_cpus=1,
        )
        n += _drain_in_order(ds, chunk, sink, cfg.batch_size)
    return {"actors": float(actors), "scored_here": float(n)}


def _drain_in_order(ds: Any, chunk: list[InputItem], sink, batch_size: int) -> int:
    """Feed results to ``sink`` in input order (a reorder buffer bounded by the chunk)."""
    nxt, pending, n = chunk[0].index, {}, 0
    out: list[dict[str, Any]] = []
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i, r in zip(b["index"], b["record"], strict=True):
            pending[int(i)] = json.loads(str(r))
        while nxt in pending:
            out.append(pending.pop(nxt))
            nxt += 1
            if len(out) >= batch_size:
                sink(out, [Decoded(InputItem(r["index"], r["path"], ())) for r in out])
                n, out = n + len(out), []
    if out:
        sink(out, [Decoded(InputItem(r["index"], r["path"], ())) for r in out])
        n += len(out)
    if pending or nxt != chunk[-1].index + 1:
        raise RuntimeError(f"Ray returned an incomplete chunk (next {nxt}, {len(pending)} stray)")
    return n
