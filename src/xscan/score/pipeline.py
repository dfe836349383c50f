"""The local scoring pipeline: threaded decode -> batching -> inference -> writing, overlapped.

::

    discovery ─► feeder thread ─► decode pool (K threads: read, hash, decode, preprocess)
                                      │  futures in input order, at most ``prefetch`` in flight
                                      ▼
                 inference (calling thread): batches of B prepared tensors -> model
                                      │  bounded queue
                                      ▼
                 writer thread: results.jsonl (fsync per batch), overlays, progress

OpenCV decoding and onnxruntime release the GIL, so threads overlap decoding with inference
and the model never waits for disk. Everything in flight is bounded (``prefetch`` decoded
images, two batches of records), so memory does not grow with the folder. Results leave in
input order, which is what makes the store resumable.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xscan.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageTooLargeError,
    MinSize,
    ScaledImage,
    decode_image_scaled,
    sniff_format,
    to_transmission,
)
from xscan.preprocess import decode_target, prepare_fast
from xscan.score.discover import InputItem

_END = object()


@dataclass
class Decoded:
    """One input after the decode stage: a prepared tensor, or the reason it failed.

    ``chw``: ``(C, H, W) float32`` network input; ``image``: the decoded original (kept only
    when overlays are drawn); ``width``/``height``: original size in pixels.
    """

    item: InputItem
    sha256: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    chw: np.ndarray | None = None
    info: Any = None
    image: np.ndarray | None = None
    error: dict[str, str] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    prediction: Any = None  # the model's Prediction, once scored
    tiled: bool = False  # scored by the model's own tiling (``image`` kept, no ``chw``)


class InputError(Exception):
    """An input that cannot be scored: ``reason`` is a short category, the text says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError("unreadable", f"{path}: cannot read ({e.strerror})") from e


def _decode_bytes(
    data: bytes, source: str, max_pixels: int, min_size_hw: MinSize = None, margin: float = 0.0
) -> ScaledImage:
    """Decode with the reasons scoring reports: empty, not_image, truncated, oversized, corrupt.

    With ``min_size_hw`` and ``margin`` > 0 a large JPEG may be decoded reduced
    (:func:`xscan.imageio.decode_image_scaled`); the result carries the original size."""
    if not data:
        raise InputError("empty", f"{source}: empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError(
            "not_image", f"{source}: not a supported image (PNG, JPEG, BMP or TIFF expected)"
        )
    # OpenCV fills a truncated JPEG with grey and warns; a complete one ends with EOI.
    if fmt == "jpeg" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        raise InputError("truncated", f"{source}: truncated JPEG (no end-of-image marker)")
    try:
        return decode_image_scaled(
            data, source, max_pixels=max_pixels, min_size_hw=min_size_hw, margin=margin
        )
    except ImageTooLargeError as e:
        raise InputError("oversized", str(e)) from e
    except ImageReadError as e:
        raise InputError("corrupt", str(e)) from e


def decode_item(
    item: InputItem,
    model: Any,
    max_pixels: int,
    keep_image: bool,
    reduce_margin: float = 0.0,
) -> Decoded:
    """Read, hash, decode and preprocess one input (runs in a decode worker thread).

    A JPEG much larger than the network input is decoded at 1/2, 1/4 or 1/8 of its size
    while still at least ``reduce_margin`` x the size it takes in the input (0: always
    decode in full); never when it will be tiled or when ``keep_image`` (overlays are drawn
    on the original). ``width``/``height`` and the boxes are in original pixels either way.
    """
    out = Decoded(item)
    tiles = model.wants_tiling_hw
    t0 = time.perf_counter()
    try:
        blobs = [_read(f) for f in item.files]
        t1 = time.perf_counter()
        h = hashlib.sha256()
        for b in blobs:
            h.update(b)
        out.sha256, out.size = h.hexdigest(), sum(len(b) for b in blobs)
        if item.kind == "raw_pair":
            lo, hi = (
                _decode_bytes(b, f, max_pixels).image
                for b, f in zip(blobs, item.files, strict=True)
            )
            if lo.ndim != 2 or hi.ndim != 2 or lo.shape != hi.shape:
                raise InputError(
                    "corrupt",
                    f"{item.files[0]} / {item.files[1]}: a raw pair needs two single-channel "
                    f"images of one size, got {lo.shape} and {hi.shape}",
                )
            image = np.stack([to_transmission(lo), to_transmission(hi)], axis=-1)
            orig_hw = image.shape[:2]
        else:
            target = None
            if not keep_image and reduce_margin > 0:
                target = decode_target(model.spec, tiles)
            scaled = _decode_bytes(blobs[0], item.files[0], max_pixels, target, reduce_margin)
            image, orig_hw = scaled.image, (scaled.orig_h, scaled.orig_w)
        t2 = time.perf_counter()
        out.height, out.width = int(orig_hw[0]), int(orig_hw[1])
        try:
            if tiles(*orig_hw):
                out.tiled = True  # far larger than the input: the model tiles it itself
            else:
                out.chw, out.info = prepare_fast(image, model.spec, orig_hw)
        except (ValueError, ImportError) as e:
            raise InputError("unsupported", f"{item.path}: {e}") from e
        t3 = time.perf_counter()
        out.timings = {"read_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3}
        out.timings["preprocess_ms"] = (t3 - t2) * 1e3
        if keep_image or out.tiled:
            out.image = image
    except InputError as e:
        out.error = {"reason": e.reason, "message": str(e)}
        out.timings = {"read_ms": (time.perf_counter() - t0) * 1e3}
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a night's run
        out.error = {"reason": "error", "message": f"{item.path}: {type(e).__name__}: {e}"}
    return out


def _r(v: float, nd: int) -> float:
    return round(float(v), nd)


def make_record(d: Decoded, pred: Any = None, infer_ms: float = 0.0) -> dict[str, Any]:
    """The ``results.jsonl`` record of one input (see docs/scoring.md for the schema)."""
    rec: dict[str, Any] = {"index": d.item.index, "path": d.item.path, "kind": d.item.kind}
    if d.item.kind == "raw_pair":
        rec["files"] = list(d.item.files)
    rec.update({"sha256": d.sha256, "size": d.size})
    timings = {k: _r(v, 3) for k, v in d.timings.items()}
    if d.error is not None or pred is None:
        rec.update({"status": "error", "error": d.error or {"reason": "error", "message": ""}})
        rec["timings_ms"] = timings
        return rec
    rec.update({"width": d.width, "height": d.height, "status": "ok"})
    rec["image_score"] = _r(pred.image_score, 6)
    rec["alarm"] = bool(pred.alarm)
    rec["threshold"] = _r(pred.threshold, 6)
    rec["tiles"] = int(getattr(pred, "tiles", 1))
    rec["detections"] = [
        {
            "class": str(label),
            "class_id": int(c),
            "score": _r(s, 6),
            "box": [_r(v, 2) for v in box],
        }
        for box, s, c, label in zip(pred.boxes, pred.scores, pred.classes, pred.labels, strict=True)
    ]
    timings["infer_ms"] = _r(infer_ms, 3)
    rec["timings_ms"] = timings
    return rec


def infer_batch(
    model: Any, batch: list[Decoded], threshold: float | None
) -> list[tuple[Any, float]]:
    """Run the model on the decoded inputs of ``batch``; ``(prediction, ms per image)`` each.

    If the batch fails as a whole, each input is retried alone so that only the input at
    fault is reported as failed.
    """
    t0 = time.perf_counter()
    try:
        x = np.stack([d.chw for d in batch])
        preds = model.infer_prepared(x, [d.info for d in batch], threshold=threshold)
        ms = (time.perf_counter() - t0) * 1e3 / len(batch)
        return [(p, ms) for p in preds]
    except Exception:  # noqa: BLE001 - isolate the failing input below
        if len(batch) == 1:
            raise
    out = []
    for d in batch:
        try:
            out.append(infer_batch(model, [d], threshold)[0])
        except Exception as e:  # noqa: BLE001
            d.error = {"reason": "inference", "message": f"{d.item.path}: {type(e).__name__}: {e}"}
            out.append((None, 0.0))
    return out


@dataclass
class PipelineOptions:
    batch_size: int = 8
    workers: int = 2
    prefetch: int = 0  # decoded inputs in flight; 0 = 4 batches
    threshold: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    keep_images: bool = False  # pass decoded originals to the sink (overlays)
    # Decode large JPEGs reduced while >= this x their size in the input. 0 (the default):
    # always full resolution, the preprocessing training and `xscan eval` use.
    reduce_margin: float = 0.0


Sink = Callable[[list[dict[str, Any]], list[Decoded]], None]


def _put(q: queue.Queue, obj: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(obj, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _feed(
    items: Iterator[InputItem], pool: ThreadPoolExecutor, q: queue.Queue, fn, stop: threading.Event
) -> None:
    try:
        for item in items:
            if not _put(q, pool.submit(fn, item), stop):
                return
        _put(q, _END, stop)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer
        _put(q, e, stop)


def _write_loop(q: queue.Queue, sink: Sink, errors: list[BaseException]) -> None:
    while True:
        job = q.get()
        if job is _END:
            return
        if errors:
            continue  # drain so that the producer never blocks
        try:
            sink(*job)
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(e)


def run_pipeline(
    model: Any, items: Iterator[InputItem], sink: Sink, opts: PipelineOptions
) -> dict[str, float]:
    """Score ``items`` with ``model``; hand each batch's records (input order) to ``sink``.

    ``sink(records, decoded)`` runs in the writer thread. Returns times in seconds:
    ``infer_s`` (inference), ``wait_s`` (inference waiting for decoded inputs),
    ``write_wait_s`` (inference waiting for the writer) and ``wall_s``.
    """
    prefetch = opts.prefetch or 4 * opts.batch_size
    in_q: queue.Queue = queue.Queue(maxsize=prefetch)
    out_q: queue.Queue = queue.Queue(maxsize=2)
    errors: list[BaseException] = []

    def decode(item: InputItem) -> Decoded:
        return decode_item(item, model, opts.max_pixels, opts.keep_images, opts.reduce_margin)

    stats = {"infer_s": 0.0, "wait_s": 0.0, "write_wait_s": 0.0, "wall_s": 0.0}
    t_start = time.perf_counter()
    pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="xscan-decode")
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(items, pool, in_q, decode, stop), daemon=True)
    writer = threading.Thread(target=_write_loop, args=(out_q, sink, errors), daemon=True)
    feeder.start()
    writer.start()
    try:
        pending: list[Decoded] = []
        done = False
        while not done and not errors:
            t0 = time.perf_counter()
            got = in_q.get()
            if isinstance(got, BaseException):
                raise got
            if got is _END:
                done = True
            else:
                pending.append(got.result() if isinstance(got, Future) else got)
            stats["wait_s"] += time.perf_counter() - t0
            if pending and (done or len(pending) >= opts.batch_size):
                t1 = time.perf_counter()
                job = _score(model, pending, opts.threshold, opts.keep_images)
                t2 = time.perf_counter()
                out_q.put(job)
                stats["infer_s"] += t2 - t1
                stats["write_wait_s"] += time.perf_counter() - t2
                pending = []
    finally:
        stop.set()
        out_q.put(_END)
        writer.join()
        feeder.join()
        _drain(in_q)
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        raise errors[0]
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


def _score(model: Any, pending: list[Decoded], threshold: float | None, keep_images: bool):
    ok = [d for d in pending if d.error is None and not d.tiled]
    preds: dict[int, tuple[Any, float]] = {}
    if ok:
        for d, pm in zip(ok, infer_batch(model, ok, threshold), strict=True):
            preds[d.item.index] = pm
    for d in pending:
        if d.error is None and d.tiled:
            preds[d.item.index] = _predict_tiled(model, d, threshold)
            if not keep_images:
                d.image = None
    records = []
    for d in pending:
        p, ms = preds.get(d.item.index, (None, 0.0))
        records.append(make_record(d, p, ms))
        d.chw = None  # the tensor is no longer needed; the writer may keep the image
        d.prediction = p
    return records, pending


def _predict_tiled(model: Any, d: Decoded, threshold: float | None) -> tuple[Any, float]:
    t0 = time.perf_counter()
    try:
        pred = model.predict_batch([d.image], threshold=threshold, tiling="always")[0]
    except Exception as e:  # noqa: BLE001 - reported for this input only
        d.error = {"reason": "inference", "message": f"{d.item.path}: {type(e).__name__}: {e}"}
        return None, 0.0
    return pred, (time.perf_counter() - t0) * 1e3


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
