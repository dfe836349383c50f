"""Append-only JSONL audit log of decisions, durable before the decision is acknowledged.

One JSON object per line per decision. :meth:`AuditLog.write_batch` appends the lines of a
whole micro-batch with one ``write`` and one ``fsync`` (group commit), and the service sends
the responses only after it returns: a decision a lane has received is on disk even if the
process is killed or the machine loses power right after.

Rotation is by size: when the file reaches ``max_bytes`` it is renamed to
``<name>.<UTC timestamp>`` and a new file is started; ``keep`` > 0 deletes the oldest rotated
files beyond that many (0 keeps them all: retention is the operator's decision).

Record fields: ``time`` (UTC ISO 8601), ``request_id``, ``lane_id``, ``scan_id``,
``input_sha256``, ``model_name``, ``model_version``, ``model_sha256``, ``operating_point``,
``threshold``, ``image_score``, ``decision`` (``alarm``/``clear``), ``n_detections``,
``latency_ms`` (arrival to decision, server side).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class AuditError(OSError):
    """The audit log could not be written; the decisions of that batch are not acknowledged."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """Thread-safe append-only JSONL file with group-commit fsync and size-based rotation."""

    def __init__(self, path: str | Path, max_bytes: int = 100 * 2**20, keep: int = 0) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.keep = int(keep)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as e:
            raise AuditError(f"{self.path}: cannot open the audit log ({e.strerror})") from e
        self._size = os.fstat(self._fd).st_size
        _fsync_dir(self.path.parent)

    def write_batch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append ``records`` and fsync; returns the number written. Raises :class:`AuditError`."""
        data = b"".join(
            json.dumps(r, separators=(",", ":"), sort_keys=True, default=str).encode() + b"\n"
            for r in records
        )
        if not data:
            return 0
        with self._lock:
            if self._fd is None:
                raise AuditError(f"{self.path}: the audit log is closed")
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                os.fsync(self._fd)
            except OSError as e:
                raise AuditError(f"{self.path}: audit write failed ({e.strerror})") from e
            self._size += len(data)
            if self._size >= self.max_bytes:
                self._rotate()
        return data.count(b"\n")

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        while target.exists():  # two rotations within a microsecond
            time.sleep(1e-6)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            target = self.path.with_name(f"{self.path.name}.{stamp}")
        os.replace(self.path, target)
        self._open()  # also fsyncs the directory, making the rename durable
        if self.keep > 0:
            for old in self.rotated_files()[: -self.keep]:
                old.unlink(missing_ok=True)

    def rotated_files(self) -> list[Path]:
        """Rotated files, oldest first (the timestamp suffix sorts chronologically)."""
        prefix = self.path.name + "."
        return sorted(p for p in self.path.parent.iterdir() if p.name.startswith(prefix))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def count_records(path: str | Path) -> int:
    """Lines in the audit log and its rotated files (used by checks and the benchmark)."""
    path = Path(path)
    files = [path] if path.exists() else []
    files += sorted(p for p in path.parent.glob(path.name + ".*"))
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += sum(1 for _ in fh)
    return total
