"""``xscan serve``: the lane inference service (standard library only at import time)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

log = logging.getLogger("xscan.serve")
KEEP_ALIVE_S = 75


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the lane inference service (HTTP, micro-batched, audited)",
        description=(
            "Serve an exported model over HTTP: POST /v1/inspect answers alarm/clear with "
            "detections; /healthz, /readyz, /v1/model, /metrics, /docs. Every flag can also "
            "be set by an XSCAN_* environment variable (flags win). See docs/serving.md."
        ),
    )
    p.add_argument(
        "model",
        nargs="?",
        help="exported .onnx model (default: $XSCAN_MODEL, then the shipped default model)",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, help="port (default 8080)")
    p.add_argument("--max-batch", type=int, help="largest inference batch (default 8)")
    p.add_argument("--max-delay-ms", type=float, help="longest wait to fill a batch (default 5 ms)")
    p.add_argument(
        "--queue-size",
        type=int,
        help="inspections allowed in the service at once; beyond: 503 (default 64)",
    )
    p.add_argument("--timeout-ms", type=float, help="per-request deadline; 504 (default 10000)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument(
        "--provider",
        action="append",
        dest="providers",
        help="execution provider (cpu, cuda, tensorrt, openvino); repeatable",
    )
    p.add_argument(
        "--token-env",
        metavar="VAR",
        help="environment variable holding the API token (default XSCAN_API_TOKEN; unset: "
        "no authentication)",
    )
    p.add_argument("--audit-log", help="append-only JSONL decision log (fsynced per batch)")
    p.add_argument("--audit-max-mb", type=float, help="rotate the audit log at this size")
    p.add_argument("--audit-keep", type=int, help="rotated audit files to keep (default 0 = all)")
    p.add_argument("--max-body-mb", type=float, help="request body limit (default 32 MB)")
    p.add_argument("--max-pixels", type=int, help="image pixel limit (default 50,000,000)")
    p.add_argument(
        "--decode-margin",
        type=float,
        metavar="M",
        help="decode large JPEGs at 1/2, 1/4 or 1/8 scale while >= M x their size in the "
        "network input (e.g. 2; faster, inputs close to but not identical with full "
        "decoding); default 0: always full resolution, as in training and xscan eval",
    )
    p.add_argument(
        "--admin-model-dir",
        help="let POST /v1/admin/reload pick a model file by name inside this directory",
    )
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.set_defaults(func=run)


_FLAG_FIELDS = (
    ("model", "model_path"),
    ("host", "host"),
    ("port", "port"),
    ("max_batch", "max_batch"),
    ("max_delay_ms", "max_delay_ms"),
    ("queue_size", "queue_size"),
    ("timeout_ms", "timeout_ms"),
    ("threads", "threads"),
    ("providers", "providers"),
    ("audit_log", "audit_log"),
    ("audit_max_mb", "audit_max_mb"),
    ("audit_keep", "audit_keep"),
    ("max_body_mb", "max_body_mb"),
    ("max_pixels", "max_pixels"),
    ("decode_margin", "decode_margin"),
    ("admin_model_dir", "admin_model_dir"),
)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xscan.serve.settings import load_settings

    flags = {field: getattr(args, attr) for attr, field in _FLAG_FIELDS}
    settings = load_settings(flags, token_env=args.token_env)
    # OpenCV reads this when it is imported: a second decompression-bomb guard for formats
    # whose header size the service does not check (TIFF).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(settings.max_pixels))
    if settings.model_path is None:
        from xscan.runtime import default_model_path

        settings = settings.replace(model_path=default_model_path())
    model_path = Path(settings.model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: model file not found")
    if settings.admin_model_dir is not None and not settings.admin_model_dir.is_dir():
        raise FileNotFoundError(f"--admin-model-dir {settings.admin_model_dir}: not a directory")
    if not settings.is_loopback and settings.token is None:
        log.warning(
            "binding to %s without an API token: anyone who reaches this port can submit "
            "scans and reload the model (set XSCAN_API_TOKEN)",
            settings.host,
        )
    return _serve(settings, model_path, access_log=args.access_log)


def _serve(settings: Any, model_path: Any, access_log: bool) -> int:
    import uvicorn

    from xscan.serve.app import create_app
    from xscan.serve.engine import ModelEngine

    engine = ModelEngine(
        model_path,
        providers=settings.providers,
        threads=settings.threads,
        warmup_batches=(1, settings.max_batch),
        warmup_runs=settings.warmup_runs,
    )
    fatal: list[str] = []
    server: uvicorn.Server | None = None

    def on_fatal(reason: str) -> None:
        fatal.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(engine, settings, on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=int(settings.timeout_ms / 1000) + 5,
        # Lanes keep their connections open; a long idle timeout makes the race between the
        # server closing an idle connection and the client reusing it rare.
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
    )
    server = uvicorn.Server(config)
    log.info("xscan serve: %s on http://%s:%d", model_path, settings.host, settings.port)
    server.run()
    if fatal:
        raise ValueError(f"{model_path}: the service could not start: {fatal[0]}")
    if not server.started:
        raise ValueError(
            f"the service could not start on {settings.host}:{settings.port} (see the log above)"
        )
    return 0
