"""Service settings from command-line flags and ``XSCAN_*`` environment variables.

Precedence: a flag given on the command line, then the environment variable, then the
default. The service never reads ``configs/``: what a model needs travels inside the model
file (its spec); what the service needs is here. Standard library only.

| setting | flag | environment | default |
|---|---|---|---|
| model_path | ``MODEL`` | ``XSCAN_MODEL`` | ``xscan.runtime.default_model_path()`` |
| host | ``--host`` | ``XSCAN_HOST`` | ``127.0.0.1`` (loopback) |
| port | ``--port`` | ``XSCAN_PORT`` | 8080 |
| max_batch | ``--max-batch`` | ``XSCAN_MAX_BATCH`` | 8 |
| max_delay_ms | ``--max-delay-ms`` | ``XSCAN_MAX_DELAY_MS`` | 5 |
| queue_size | ``--queue-size`` | ``XSCAN_QUEUE_SIZE`` | 64 |
| timeout_ms | ``--timeout-ms`` | ``XSCAN_TIMEOUT_MS`` | 10000 |
| threads | ``--threads`` | ``XSCAN_THREADS`` | onnxruntime's choice |
| providers | ``--provider`` (repeatable) | ``XSCAN_PROVIDERS`` (comma separated) | CPU |
| token | ``--token-env VAR`` names the variable | ``XSCAN_API_TOKEN`` | none (no auth) |
| audit_log | ``--audit-log`` | ``XSCAN_AUDIT_LOG`` | none (no audit log) |
| audit_max_mb | ``--audit-max-mb`` | ``XSCAN_AUDIT_MAX_MB`` | 100 |
| audit_keep | ``--audit-keep`` | ``XSCAN_AUDIT_KEEP`` | 0 (keep every rotated file) |
| max_body_mb | ``--max-body-mb`` | ``XSCAN_MAX_BODY_MB`` | 32 |
| max_pixels | ``--max-pixels`` | ``XSCAN_MAX_PIXELS`` | 50,000,000 |
| decode_margin | ``--decode-margin`` | ``XSCAN_DECODE_MARGIN`` | 0 (always full resolution) |
| admin_model_dir | ``--admin-model-dir`` | ``XSCAN_ADMIN_MODEL_DIR`` | none |
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "XSCAN_"
DEFAULT_TOKEN_ENV = "XSCAN_API_TOKEN"


class SettingsError(ValueError):
    """A setting is invalid; the message names the flag/variable and what was expected."""


@dataclass(frozen=True)
class ServeSettings:
    """Everything the service needs besides the model itself."""

    model_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 8
    max_delay_ms: float = 5.0
    queue_size: int = 64
    timeout_ms: float = 10_000.0
    threads: int | None = None
    providers: tuple[str, ...] | None = None
    # repr=False: the token must never appear in logs or tracebacks.
    token: str | None = field(default=None, repr=False)
    audit_log: Path | None = None
    audit_max_mb: float = 100.0
    audit_keep: int = 0
    max_body_mb: float = 32.0
    max_pixels: int = 50_000_000
    decode_margin: float = 0.0  # > 0: large JPEGs decoded reduced (xscan.imageio)
    admin_model_dir: Path | None = None
    warmup_runs: int = 2

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def audit_max_bytes(self) -> int:
        return int(self.audit_max_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")

    def validate(self) -> ServeSettings:
        checks = [
            (1 <= self.port <= 65535, "port", "1..65535", self.port),
            (1 <= self.max_batch <= 1024, "max_batch", "1..1024", self.max_batch),
            (0 <= self.max_delay_ms <= 10_000, "max_delay_ms", "0..10000", self.max_delay_ms),
            (self.queue_size >= 1, "queue_size", ">= 1", self.queue_size),
            (self.timeout_ms > 0, "timeout_ms", "> 0", self.timeout_ms),
            (self.threads is None or self.threads >= 1, "threads", ">= 1", self.threads),
            (self.max_body_mb > 0, "max_body_mb", "> 0", self.max_body_mb),
            (self.max_pixels >= 1, "max_pixels", ">= 1", self.max_pixels),
            (
                self.decode_margin == 0 or self.decode_margin >= 1,
                "decode_margin",
                "0 or >= 1",
                self.decode_margin,
            ),
            (self.audit_max_mb > 0, "audit_max_mb", "> 0", self.audit_max_mb),
            (self.audit_keep >= 0, "audit_keep", ">= 0", self.audit_keep),
            (self.warmup_runs >= 0, "warmup_runs", ">= 0", self.warmup_runs),
        ]
        for ok, name, expected, got in checks:
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise SettingsError(
                    f"{flag} / {ENV_PREFIX}{name.upper()}: expected {expected}, got {got}"
                )
        if self.token is not None and len(self.token) < 16:
            raise SettingsError("API token: expected at least 16 characters")
        return self

    def replace(self, **changes: Any) -> ServeSettings:
        return dataclasses.replace(self, **changes).validate()

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values, without the token (only whether one is set)."""
        d = {}
        for f in dataclasses.fields(self):
            if f.name == "token":
                continue
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        d["auth"] = self.token is not None
        return d


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return low in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: expected {kind.__name__}, got {raw!r}") from e


# setting name -> (type, environment variable)
_ENV_FIELDS: dict[str, tuple[type, str]] = {
    "model_path": (Path, "XSCAN_MODEL"),
    "host": (str, "XSCAN_HOST"),
    "port": (int, "XSCAN_PORT"),
    "max_batch": (int, "XSCAN_MAX_BATCH"),
    "max_delay_ms": (float, "XSCAN_MAX_DELAY_MS"),
    "queue_size": (int, "XSCAN_QUEUE_SIZE"),
    "timeout_ms": (float, "XSCAN_TIMEOUT_MS"),
    "threads": (int, "XSCAN_THREADS"),
    "audit_log": (Path, "XSCAN_AUDIT_LOG"),
    "audit_max_mb": (float, "XSCAN_AUDIT_MAX_MB"),
    "audit_keep": (int, "XSCAN_AUDIT_KEEP"),
    "max_body_mb": (float, "XSCAN_MAX_BODY_MB"),
    "max_pixels": (int, "XSCAN_MAX_PIXELS"),
    "decode_margin": (float, "XSCAN_DECODE_MARGIN"),
    "admin_model_dir": (Path, "XSCAN_ADMIN_MODEL_DIR"),
    "warmup_runs": (int, "XSCAN_WARMUP_RUNS"),
}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    token_env: str | None = None,
) -> ServeSettings:
    """Resolve settings: ``flags`` (values that are ``None`` count as not given) override
    ``environ`` (default ``os.environ``), which overrides the defaults.

    ``token_env`` names the environment variable holding the API token (default
    ``XSCAN_API_TOKEN``); the token itself is never taken from a flag, so it does not show in
    the process list.
    """
    environ = os.environ if environ is None else environ
    flags = dict(flags or {})
    values: dict[str, Any] = {}
    for name, (kind, var) in _ENV_FIELDS.items():
        raw = environ.get(var)
        if raw is not None and raw.strip() != "":
            values[name] = _convert(var, raw.strip(), kind)
    providers = environ.get("XSCAN_PROVIDERS", "").strip()
    if providers:
        values["providers"] = tuple(p.strip() for p in providers.split(",") if p.strip())
    var = token_env or DEFAULT_TOKEN_ENV
    token = environ.get(var)
    if token_env and token is None:
        raise SettingsError(f"--token-env {token_env}: environment variable {token_env} is not set")
    if token:
        values["token"] = token
    known = {f.name for f in dataclasses.fields(ServeSettings)}
    for name, v in flags.items():
        if name not in known:
            raise SettingsError(f"unknown setting {name!r}; known: {sorted(known)}")
        if v is None:
            continue
        if name in ("model_path", "audit_log", "admin_model_dir"):
            v = Path(v)
        if name == "providers":
            v = tuple(v)
        values[name] = v
    return ServeSettings(**values).validate()
