"""Prometheus metrics of the service (prometheus-client, one registry per app).

Label values are bounded so that clients cannot grow the registry without limit: routes are
the route templates (unknown paths count as ``other``) and at most :data:`MAX_LANES` distinct
lane ids get their own series (later ones count as ``other``).
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MAX_LANES = 256
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class ServiceMetrics:
    """All metrics of one service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "xscan_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "xscan_request_latency_seconds",
            "Server-side request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "xscan_queue_wait_seconds",
            "Time an inspection waited for its batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "xscan_batch_inference_seconds",
            "Model time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "xscan_batch_size", "Inspections per inference batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "xscan_queue_depth", "Inspections waiting for inference", registry=r
        )
        self.inflight = Gauge("xscan_inflight_requests", "Requests being handled", registry=r)
        self.decisions = Counter(
            "xscan_decisions", "Decisions by lane and outcome", ["lane", "decision"], registry=r
        )
        self.rejected = Counter(
            "xscan_rejected", "Inspections refused, by reason", ["reason"], registry=r
        )
        self.audit_records = Counter(
            "xscan_audit_records", "Decisions committed to the audit log", registry=r
        )
        self.reloads = Counter(
            "xscan_model_reloads", "Model reloads by result", ["result"], registry=r
        )
        self.model_info = Gauge(
            "xscan_model_info",
            "The model being served (value 1)",
            ["name", "version", "sha256", "task"],
            registry=r,
        )
        self.ready = Gauge("xscan_ready", "1 when a model is loaded and warmed", registry=r)
        self._lanes: set[str] = set()
        self._lanes_lock = threading.Lock()

    def lane_label(self, lane_id: str | None) -> str:
        if not lane_id:
            return "none"
        with self._lanes_lock:
            if lane_id in self._lanes:
                return lane_id
            if len(self._lanes) < MAX_LANES:
                self._lanes.add(lane_id)
                return lane_id
        return "other"

    def set_model(self, name: str, version: str, sha256: str, task: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, sha256, task).set(1)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
