"""Dynamic micro-batching on a dedicated inference thread.

Requests are prepared (decoded, letterboxed) on worker threads and submitted here as
:class:`InspectItem`s. One inference thread takes the oldest waiting item and gathers more
until ``max_batch`` items are there or ``max_delay`` has passed since the oldest arrived,
stacks them into one ``(B, C, H, W) float32`` batch and runs the model once (onnxruntime
releases the GIL, so the event loop keeps accepting and decoding meanwhile). Items prepared
for different models (a reload happened in between) never share a batch: each runs on the
model it was prepared for. Scans large enough to need tiling run alone through
``model.predict``.

Admission is bounded: :meth:`MicroBatcher.begin_prepare` refuses a request when
``queue_size`` inspections are already inside (being decoded, queued, or awaiting the audit
commit), and :meth:`MicroBatcher.submit` raises :class:`QueueFull` at the same bound, instead
of letting memory and waits grow without limit. Each item carries a
``concurrent.futures.Future``; the request handler cancels it when its deadline passes, and
the inference thread skips cancelled items (``set_running_or_notify_cancel``), so a timed-out
request costs no compute and leaves no audit record.

After inference a batch's decisions go to a second thread that appends them to the audit log
with one fsync for everything waiting (group commit, overlapping the next batch's inference),
and only then are the futures resolved: a response is never sent for a decision that is not
on disk. Decisions waiting for their commit count against the queue bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xscan.serve.audit import AuditLog, utc_now_iso
from xscan.serve.engine import ServedModel
from xscan.serve.metrics import ServiceMetrics

log = logging.getLogger("xscan.serve")


class QueueFull(RuntimeError):
    """The inference queue is at its limit; the client should retry later."""


class BatcherStopped(RuntimeError):
    """The service is shutting down and accepts no new inspections."""


@dataclass(eq=False)
class InspectItem:
    """One inspection waiting for inference.

    ``tensor``: ``(C, H, W) float32`` prepared input and ``info`` its letterbox mapping, or
    ``None`` for a scan that runs tiled (then ``image`` holds the decoded scan).
    ``meta``: request fields for the audit record (``request_id``, ``lane_id``, ``scan_id``,
    ``input_sha256``). ``t_arrival``: ``time.perf_counter()`` when the request arrived.
    """

    served: ServedModel
    tensor: np.ndarray | None
    info: Any
    meta: dict[str, Any]
    t_arrival: float
    image: np.ndarray | None = None
    future: Future = field(default_factory=Future)
    t_enqueued: float = 0.0


@dataclass
class _Decided:
    """A batch that has been inferred and waits for its audit commit."""

    items: list[InspectItem]
    preds: list[Any]
    served: ServedModel
    t0: float
    t1: float
    depth: int


@dataclass
class InspectResult:
    """What the inference thread hands back for one item."""

    prediction: Any  # xscan.runtime.Prediction
    served: ServedModel
    batch_size: int
    queue_ms: float
    inference_ms: float
    queue_depth: int
    audited: bool


class MicroBatcher:
    """Groups submitted items into batches and runs them on one inference thread."""

    def __init__(
        self,
        max_batch: int,
        max_delay_s: float,
        queue_size: int,
        metrics: ServiceMetrics,
        audit: AuditLog | None = None,
    ) -> None:
        self.max_batch = max(1, int(max_batch))
        self.max_delay_s = max(0.0, float(max_delay_s))
        self.queue_size = max(1, int(queue_size))
        self.metrics = metrics
        self.audit = audit
        self._queue: deque[InspectItem] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._preparing = 0
        self._commits: deque[_Decided] = deque()
        self._awaiting_commit = 0
        self._inference_done = False
        self._commit_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xscan-inference", daemon=True)
        self._thread.start()
        if self.audit is not None:
            self._commit_thread = threading.Thread(
                target=self._commit_loop, name="xscan-audit", daemon=True
            )
            self._commit_thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop accepting items, finish the ones queued, and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            self._inference_done = True
            self._cond.notify_all()
        if self._commit_thread is not None:
            self._commit_thread.join(timeout)

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def inside(self) -> int:
        """Inspections past admission: being decoded, queued, or waiting for the audit."""
        return self._preparing + len(self._queue) + self._awaiting_commit

    @property
    def full(self) -> bool:
        return self.inside >= self.queue_size

    def begin_prepare(self) -> bool:
        """Admit a request that is about to be read and decoded; ``False`` (not admitted)
        when ``queue_size`` inspections are already inside the service. Bounding them all,
        not only those queued for inference, bounds the bodies held in memory and the wait."""
        with self._cond:
            if self._preparing + len(self._queue) + self._awaiting_commit >= self.queue_size:
                return False
            self._preparing += 1
            return True

    def end_prepare(self) -> None:
        """That request was submitted or failed: call once per :meth:`begin_prepare`."""
        with self._cond:
            self._preparing -= 1
            self._cond.notify_all()  # two threads wait on this condition

    def submit(self, item: InspectItem, prepared: bool = False) -> Future:
        """Queue ``item``; raises :class:`QueueFull` or :class:`BatcherStopped`.

        ``prepared=True`` also ends the item's :meth:`begin_prepare` (whether or not it is
        queued), in the same step, so the batcher never waits for the request it holds."""
        with self._cond:
            if prepared:
                self._preparing -= 1
                self._cond.notify_all()  # two threads wait on this condition
            if self._stopping:
                raise BatcherStopped("the service is shutting down")
            if len(self._queue) + self._awaiting_commit >= self.queue_size:
                raise QueueFull(f"inference queue is full ({self.queue_size} waiting)")
            item.t_enqueued = time.perf_counter()
            self._queue.append(item)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify_all()
        return item.future

    # ----------------------------------------------------------- inference thread
    def _next_batch(self) -> tuple[list[InspectItem], int] | None:
        """Block until a batch is due; ``None`` when stopped and drained."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue[0]
            limit = min(self.max_batch, first.served.batch_limit or self.max_batch)
            due = first.t_enqueued + self.max_delay_s
            # Wait for more only while requests are still being decoded: waiting when none
            # are on the way would add latency and gain nothing (one client, or idle lanes).
            while len(self._queue) < limit and self._preparing > 0 and not self._stopping:
                remaining = due - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            depth = len(self._queue)
            batch = [self._queue.popleft()]
            if batch[0].tensor is not None:
                while (
                    self._queue
                    and len(batch) < limit
                    and self._queue[0].served is first.served
                    and self._queue[0].tensor is not None
                ):
                    batch.append(self._queue.popleft())
            self.metrics.queue_depth.set(len(self._queue))
        return batch, depth

    def _run(self) -> None:
        while True:
            nxt = self._next_batch()
            if nxt is None:
                return
            items, depth = nxt
            live = [it for it in items if it.future.set_running_or_notify_cancel()]
            if len(live) < len(items):
                self.metrics.rejected.labels("deadline").inc(len(items) - len(live))
            if live:
                try:
                    self._process(live, depth)
                except Exception as e:  # never let the inference thread die
                    log.exception("inference batch failed")
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(e)

    def _process(self, items: list[InspectItem], depth: int) -> None:
        served = items[0].served
        model = served.model
        t0 = time.perf_counter()
        if items[0].tensor is None:
            preds = [model.predict(items[0].image)]
        else:
            batch = np.stack([it.tensor for it in items])
            preds = model.infer_prepared(batch, [it.info for it in items])
        t1 = time.perf_counter()
        self.metrics.batch_size.observe(len(items))
        self.metrics.inference_latency.observe(t1 - t0)
        decided = _Decided(items, preds, served, t0, t1, depth)
        if self.audit is None:
            self._resolve(decided, audited=False)
            return
        with self._cond:
            self._commits.append(decided)
            self._awaiting_commit += len(items)
            self._cond.notify_all()

    def _commit_loop(self) -> None:
        """Audit thread: append and fsync every decided batch waiting (group commit across
        batches while the next batch infers), then release their responses."""
        assert self.audit is not None
        while True:
            with self._cond:
                while not self._commits:
                    if self._inference_done:
                        return
                    self._cond.wait()
                pending = list(self._commits)
                self._commits.clear()
            n = sum(len(d.items) for d in pending)
            try:
                self.audit.write_batch(
                    self._record(it, p, d.served, d.t1)
                    for d in pending
                    for it, p in zip(d.items, d.preds, strict=True)
                )
                self.metrics.audit_records.inc(n)
                for d in pending:
                    self._resolve(d, audited=True)
            except Exception as e:  # AuditError: none of these decisions is acknowledged
                log.error("audit commit failed: %s", e)
                for d in pending:
                    for it in d.items:
                        if not it.future.done():
                            it.future.set_exception(e)
            finally:
                with self._cond:
                    self._awaiting_commit -= n

    def _resolve(self, d: _Decided, audited: bool) -> None:
        for it, p in zip(d.items, d.preds, strict=True):
            queue_s = d.t0 - it.t_enqueued
            self.metrics.queue_wait.observe(queue_s)
            lane = self.metrics.lane_label(it.meta.get("lane_id"))
            self.metrics.decisions.labels(lane, "alarm" if p.alarm else "clear").inc()
            it.future.set_result(
                InspectResult(
                    prediction=p,
                    served=d.served,
                    batch_size=len(d.items),
                    queue_ms=queue_s * 1000.0,
                    inference_ms=(d.t1 - d.t0) * 1000.0,
                    queue_depth=d.depth,
                    audited=audited,
                )
            )

    @staticmethod
    def _record(it: InspectItem, p: Any, served: ServedModel, t_decided: float) -> dict[str, Any]:
        info = served.info()
        return {
            "time": utc_now_iso(),
            **it.meta,
            "model_name": info["name"],
            "model_version": info["version"],
            "model_sha256": info["sha256"],
            "operating_point": info["operating_point"],
            "threshold": float(p.threshold),
            "image_score": round(float(p.image_score), 6),
            "decision": "alarm" if p.alarm else "clear",
            "n_detections": int(len(p.scores)),
            "latency_ms": round((t_decided - it.t_arrival) * 1000.0, 3),
        }
