"""The lane service as an ASGI app (Starlette): ``create_app(engine, settings)``.

Routes (see :mod:`xscan.serve.openapi` for the full description, served at
``/openapi.json`` and ``/docs``):

* ``POST /v1/inspect`` — a scan (raw body or multipart field ``image``), optional ``lane_id``
  and ``scan_id``; answers the decision at the model's operating point, detections and timing.
* ``GET /healthz`` (alive), ``GET /readyz`` (model loaded and warmed, else 503),
  ``GET /v1/model`` (the served spec), ``GET /metrics`` (Prometheus),
  ``POST /v1/admin/reload`` (hot reload; also on SIGHUP).

Every error is JSON ``{"error": {"status", "code", "message"}, "request_id"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import CancelledError as FutureCancelled
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xscan.imageio import (
    ImageReadError,
    ImageTooLargeError,
    decode_image_scaled,
    sniff_format,
)
from xscan.preprocess import decode_target, prepare_fast
from xscan.serve.audit import AuditError, AuditLog
from xscan.serve.batcher import BatcherStopped, InspectItem, MicroBatcher, QueueFull
from xscan.serve.engine import ModelEngine, ModelLoadError, ReloadInProgress, ServedModel
from xscan.serve.metrics import ServiceMetrics
from xscan.serve.openapi import DOCS_HTML, openapi_document
from xscan.serve.security import BodyLimitMiddleware, BodyTooLarge, TokenChecker, validate_id
from xscan.serve.settings import ServeSettings

log = logging.getLogger("xscan.serve")

ROUTES = (
    "/v1/inspect",
    "/v1/model",
    "/v1/admin/reload",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
)


class ApiError(Exception):
    """An error answered as JSON with ``status`` and a stable machine-readable ``code``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, request_id: str | None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": {"status": status, "code": code, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


class MetricsMiddleware:
    """Counts requests by route template and status, and times them."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - t0)


def _request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id", "")
    try:
        return validate_id("X-Request-ID", rid) or uuid.uuid4().hex
    except ValueError:
        return uuid.uuid4().hex


def _decode_and_prepare(
    data: bytes,
    served: ServedModel,
    max_pixels: int,
    source: str,
    reduce_margin: float = 0.0,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Worker-thread part of a request: hash, decode (format sniffed from the bytes, pixel
    count checked from the header before decoding), prepare for ``served``'s model.

    A JPEG much larger than the model input is decoded at 1/2, 1/4 or 1/8 of its size while
    it stays at least ``reduce_margin`` x its size in the input (0: always in full; never
    when the model will tile it), then shrunk on integers before the float conversion
    (:func:`xscan.preprocess.prepare_fast`); the letterbox info and the facts are in
    original pixels. Returns ``(tensor | None, letterbox info | None, image | None, image
    facts)``; the image (full resolution) only when the model tiles it."""
    sha = hashlib.sha256(data).hexdigest()
    model = served.model
    target = decode_target(model.spec, model.wants_tiling_hw) if reduce_margin > 0 else None
    scaled = decode_image_scaled(
        data, source, max_pixels=max_pixels, min_size_hw=target, margin=reduce_margin
    )
    img = scaled.image
    facts = {
        "width": scaled.orig_w,
        "height": scaled.orig_h,
        "format": sniff_format(data),
        "dtype": str(img.dtype),
        "sha256": sha,
    }
    if model.wants_tiling_hw(scaled.orig_h, scaled.orig_w):
        return None, None, img, facts
    tensor, info = prepare_fast(img, model.spec, (scaled.orig_h, scaled.orig_w))
    return tensor, info, None, facts


class ServiceState:
    """Everything the routes share; built by :func:`create_app`."""

    def __init__(
        self,
        engine: ModelEngine,
        settings: ServeSettings,
        metrics: ServiceMetrics,
        on_fatal: Callable[[str], None] | None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.tokens = TokenChecker(settings.token)
        self.on_fatal = on_fatal
        self.audit: AuditLog | None = None
        self.batcher: MicroBatcher | None = None
        self.loading = False
        self.started = time.time()
        # Decoding is CPU work: more threads than cores only adds GIL contention, which
        # starves the event loop (late keep-alive timers, slow accepts) under load.
        self.decode_threads = max(2, os.cpu_count() or 2)
        self.decode_limiter: anyio.CapacityLimiter | None = None

    def require_token(self, request: Request) -> None:
        if not self.tokens.check(request.headers):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API token (send 'Authorization: Bearer <token>' or "
                "'X-API-Token: <token>')",
                {"WWW-Authenticate": 'Bearer realm="xscan"'},
            )

    def served(self) -> ServedModel:
        served = self.engine.current
        if served is None or self.batcher is None:
            reason = "the model is still loading" if self.loading else "no model is loaded"
            if self.engine.last_error:
                reason += f" (last error: {self.engine.last_error})"
            raise ApiError(503, "not_ready", reason, {"Retry-After": "1"})
        return served

    def model_changed(self, served: ServedModel) -> None:
        i = served.info()
        self.metrics.set_model(i["name"], i["version"], i["sha256"], i["task"])
        self.metrics.ready.set(1)


# ----------------------------------------------------------------------- inspect
async def _read_inspection(request: Request) -> tuple[bytes, str | None, str | None]:
    """Image bytes, lane id and scan id from a raw or multipart body (ids may also come from
    query parameters). The body limit applies while reading."""
    lane = request.query_params.get("lane_id")
    scan = request.query_params.get("scan_id")
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8, max_part_size=1024)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "missing_image", "multipart body needs a file field 'image'")
        data = await upload.read()
        lane = form.get("lane_id") or lane
        scan = form.get("scan_id") or scan
        await form.close()
    else:
        data = await request.body()
    try:
        lane = validate_id("lane_id", lane if isinstance(lane, str) else None)
        scan = validate_id("scan_id", scan if isinstance(scan, str) else None)
    except ValueError as e:
        raise ApiError(422, "invalid_parameter", str(e)) from e
    return data, lane, scan


async def _prepare(state: ServiceState, data: bytes, served: ServedModel, rid: str) -> tuple:
    if not data:
        raise ApiError(400, "empty_body", "the request body is empty; send the scan's bytes")
    if sniff_format(data) is None:
        raise ApiError(
            415, "unsupported_media", "not a supported image: PNG, JPEG, BMP or TIFF expected"
        )
    try:
        return await anyio.to_thread.run_sync(
            _decode_and_prepare,
            data,
            served,
            state.settings.max_pixels,
            f"request {rid}",
            state.settings.decode_margin,
            limiter=state.decode_limiter,
        )
    except ImageTooLargeError as e:
        raise ApiError(413, "image_too_large", str(e)) from e
    except (ImageReadError, ValueError) as e:
        raise ApiError(422, "undecodable_image", str(e)) from e


async def _await_decision(state: ServiceState, item: InspectItem, deadline: float) -> Any:
    fut = asyncio.wrap_future(item.future)
    try:
        return await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - time.monotonic()))
    except (asyncio.TimeoutError, TimeoutError):
        if item.future.cancel():  # still queued: never computed, never audited
            raise ApiError(
                504, "deadline_exceeded", "no decision within the request deadline"
            ) from None
        # Already running: the decision is being made and audited; wait for it briefly so a
        # decision that is logged is also delivered whenever possible.
        try:
            return await asyncio.wait_for(asyncio.shield(fut), state.settings.timeout_ms / 1000)
        except (asyncio.TimeoutError, TimeoutError):
            raise ApiError(
                504, "deadline_exceeded", "no decision within the request deadline"
            ) from None


async def inspect(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    t_arrival = time.perf_counter()
    deadline = time.monotonic() + state.settings.timeout_ms / 1000.0
    rid = _request_id(request)
    try:
        state.require_token(request)
        served = state.served()
        batcher = state.batcher
        assert batcher is not None
        if not batcher.begin_prepare():  # shed load before reading the body
            state.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                503,
                "overloaded",
                f"{batcher.queue_size} inspections are already in progress",
                {"Retry-After": "1"},
            )
        handed_over = False
        try:
            data, lane, scan = await _read_inspection(request)
            t_read = time.perf_counter()
            tensor, info, image, facts = await _prepare(state, data, served, rid)
            t_prep = time.perf_counter()
            meta = {
                "request_id": rid,
                "lane_id": lane,
                "scan_id": scan,
                "input_sha256": facts["sha256"],
            }
            item = InspectItem(served, tensor, info, meta, t_arrival, image=image)
            handed_over = True
            batcher.submit(item, prepared=True)
        except QueueFull as e:
            state.metrics.rejected.labels("queue_full").inc()
            raise ApiError(503, "overloaded", str(e), {"Retry-After": "1"}) from e
        except BatcherStopped as e:
            raise ApiError(503, "shutting_down", str(e), {"Retry-After": "5"}) from e
        finally:
            if not handed_over:
                batcher.end_prepare()
        try:
            result = await _await_decision(state, item, deadline)
        except AuditError as e:
            log.error("audit log failure, decision not acknowledged: %s", e)
            raise ApiError(503, "audit_unavailable", f"decision not recorded: {e}") from e
        except ApiError:
            raise
        except FutureCancelled as e:
            raise ApiError(504, "deadline_exceeded", "request cancelled") from e
        except Exception as e:
            log.exception("inference failed for request %s", rid)
            raise ApiError(500, "inference_failed", f"{type(e).__name__}: {e}") from e
    except ApiError as e:
        return error_response(e.status, e.code, e.message, rid, e.headers)
    except BodyTooLarge as e:
        state.metrics.rejected.labels("body_too_large").inc()
        return error_response(413, "body_too_large", str(e), rid, {"Connection": "close"})
    except ClientDisconnect:
        return error_response(400, "client_disconnected", "client went away", rid)
    pred = result.prediction
    model = result.served.info()
    body = {
        "request_id": rid,
        "lane_id": lane,
        "scan_id": scan,
        "decision": "alarm" if pred.alarm else "clear",
        **pred.to_dict(),
        "operating_point": model["operating_point"],
        "image": facts,
        "model": {k: model[k] for k in ("name", "version", "task", "sha256", "generation")},
        "audited": result.audited,
        "batch": {"size": result.batch_size, "queue_depth": result.queue_depth},
        "timing_ms": {
            "read": round((t_read - t_arrival) * 1000.0, 3),
            "decode": round((t_prep - t_read) * 1000.0, 3),
            "queue": round(result.queue_ms, 3),
            "inference": round(result.inference_ms, 3),
        },
        "latency_ms": round((time.perf_counter() - t_arrival) * 1000.0, 3),
    }
    return JSONResponse(body, headers={"X-Request-ID": rid})


# ------------------------------------------------------------------ other routes
async def healthz(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    return JSONResponse({"status": "alive", "uptime_s": round(time.time() - state.started, 3)})


async def readyz(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    try:
        served = state.served()
    except ApiError as e:
        return JSONResponse(
            {"ready": False, "reason": e.message}, status_code=503, headers=e.headers
        )
    return JSONResponse({"ready": True, "model": served.info()})


async def model_info(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    try:
        state.require_token(request)
        served = state.served()
    except ApiError as e:
        return error_response(e.status, e.code, e.message, None, e.headers)
    return JSONResponse({"model": served.info(), "spec": served.spec.to_dict()})


async def metrics_route(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    try:
        state.require_token(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message, None, e.headers)
    if state.batcher is not None:
        state.metrics.queue_depth.set(state.batcher.depth)
    data, ctype = state.metrics.render()
    return Response(data, headers={"Content-Type": ctype})


def _admin_path(state: ServiceState, raw: Any) -> Path:
    """A reload path from a request: only a file name inside ``admin_model_dir``."""
    root = state.settings.admin_model_dir
    if root is None:
        raise ApiError(
            403,
            "paths_disabled",
            "this service reloads only its configured model; start it with "
            "--admin-model-dir DIR to allow choosing a model file in DIR",
        )
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise ApiError(422, "invalid_parameter", "path: expected a file name (string)")
    root = root.resolve()
    target = (root / raw).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ApiError(403, "path_outside_model_dir", f"path: {raw!r} is not inside the model dir")
    if target.suffix.lower() != ".onnx":
        raise ApiError(422, "invalid_parameter", f"path: {raw!r} is not an .onnx file")
    return target


async def do_reload(state: ServiceState, path: Path | None) -> tuple[int, dict[str, Any]]:
    """Load, warm and swap in a model off the event loop; returns (status, JSON body)."""
    old = state.engine.current
    old_info = old.info() if old else None
    try:
        served = await anyio.to_thread.run_sync(state.engine.reload, path)
    except ReloadInProgress as e:
        state.metrics.reloads.labels("busy").inc()
        return 409, {"reloaded": False, "error": str(e), "model": old_info}
    except ModelLoadError as e:
        state.metrics.reloads.labels("failed").inc()
        log.error("model reload failed, still serving the previous model: %s", e)
        return 422, {"reloaded": False, "error": str(e), "model": old_info}
    state.metrics.reloads.labels("ok").inc()
    state.model_changed(served)
    return 200, {"reloaded": True, "model": served.info(), "previous": old_info}


async def admin_reload(request: Request) -> Response:
    state: ServiceState = request.app.state.xscan
    try:
        state.require_token(request)
        body = await request.body()
        path = None
        if body.strip():
            try:
                payload = json.loads(body)
            except ValueError as e:
                raise ApiError(422, "invalid_json", f"body: not valid JSON ({e})") from e
            if not isinstance(payload, dict) or set(payload) - {"path"}:
                raise ApiError(422, "invalid_parameter", 'body: expected {"path": "<file>"}')
            if "path" in payload:
                path = _admin_path(state, payload["path"])
    except ApiError as e:
        return error_response(e.status, e.code, e.message, None, e.headers)
    except BodyTooLarge as e:
        return error_response(413, "body_too_large", str(e), None)
    status, out = await do_reload(state, path)
    return JSONResponse(out, status_code=status)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", f"{type(exc).__name__}", None)


# -------------------------------------------------------------------- lifecycle
async def _initial_load(state: ServiceState) -> None:
    state.loading = True
    try:
        served = await anyio.to_thread.run_sync(state.engine.load)
    except ModelLoadError as e:
        log.error("could not load the model: %s", e)
        if state.on_fatal:
            state.on_fatal(str(e))
        return
    finally:
        state.loading = False
    state.model_changed(served)


def _install_sighup(state: ServiceState, tasks: set) -> bool:
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        log.info("SIGHUP: reloading the model from %s", state.engine.path)
        task = loop.create_task(do_reload(state, None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError):
        return False
    return True


def _lifespan(state: ServiceState):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        s = state.settings
        state.decode_limiter = anyio.CapacityLimiter(state.decode_threads)
        if s.audit_log is not None:
            state.audit = AuditLog(s.audit_log, s.audit_max_bytes, s.audit_keep)
            log.info("audit log: %s", s.audit_log)
        else:
            log.warning("no audit log configured (--audit-log / XSCAN_AUDIT_LOG)")
        state.batcher = MicroBatcher(
            s.max_batch, s.max_delay_ms / 1000.0, s.queue_size, state.metrics, state.audit
        )
        state.batcher.start()
        tasks: set = set()
        if state.engine.current is None:
            task = asyncio.get_running_loop().create_task(_initial_load(state))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            state.model_changed(state.engine.current)
        hup = _install_sighup(state, tasks)
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            state.metrics.ready.set(0)
            # uvicorn has already waited for in-flight requests; drain whatever is queued.
            await anyio.to_thread.run_sync(state.batcher.stop)
            for task in list(tasks):
                task.cancel()
            if state.audit is not None:
                state.audit.close()
            log.info("drained and stopped")

    return lifespan


def create_app(
    engine: ModelEngine,
    settings: ServeSettings,
    metrics: ServiceMetrics | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> Starlette:
    """The service app. ``engine`` may be loaded already; if not, it is loaded in the
    background at start-up (``/readyz`` answers 503 until then). ``on_fatal`` is called
    with the reason when the start-up load fails (the CLI stops the server)."""
    state = ServiceState(engine, settings, metrics or ServiceMetrics(), on_fatal)
    routes = [
        Route("/v1/inspect", inspect, methods=["POST"]),
        Route("/v1/model", model_info, methods=["GET"]),
        Route("/v1/admin/reload", admin_reload, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware, metrics=state.metrics),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=_lifespan(state),
    )
    app.state.xscan = state
    return app
