"""The resumable, exactly-once result store of a scoring run.

``RUN_DIR/results.jsonl`` is append-only: one JSON object per input, in discovery order, with
``index`` equal to its line number (0-based). Each batch is written, flushed and fsync'ed
before the next one, so after a crash (SIGKILL, power loss) the file is a prefix of the
complete result list, plus at most one torn last line. On reopening, the torn line is cut
off and the run continues at the first index not on disk: every input ends up exactly once.

``RUN_DIR/run.json`` holds the run's identity (model hash, inputs and the options that change
results) and one entry per session (wall time, counts) for throughput reporting. A run is
only resumed with the same identity; ``restart=True`` starts it afresh.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"
RUN_META = "run.json"
# Files derived from results.jsonl (rewritten at the end of every session).
DERIVED = ("summary.csv", "coco_results.json", "coco_images.json", "report.html")


class RunMismatchError(ValueError):
    """The run directory holds a run with a different model or different arguments."""


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def recover_results(path: Path) -> tuple[int, dict[str, Any] | None]:
    """Cut a torn tail off ``results.jsonl``; return ``(records on disk, last record)``.

    Checks that line ``k`` holds ``index == k``; any damage before the last line is an error
    (it cannot come from an interrupted append).
    """
    if not path.exists():
        return 0, None
    n, last, good_end = 0, None, 0
    with open(path, "rb") as f:
        offset = 0
        for raw in f:
            end = offset + len(raw)
            complete = raw.endswith(b"\n")
            try:
                rec = json.loads(raw) if complete else None
            except json.JSONDecodeError:
                rec = None
            if rec is None:
                if f.read(1):
                    raise ValueError(f"{path}: line {n + 1} is damaged and is not the last line")
                break
            if rec.get("index") != n:
                raise ValueError(
                    f"{path}: line {n + 1} has index {rec.get('index')!r}, expected {n}"
                )
            n, last, good_end, offset = n + 1, rec, end, end
    if good_end != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return n, last


class ResultStore:
    """Append-only JSONL results of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path, identity: dict[str, Any], restart: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS
        self.meta_path = self.run_dir / RUN_META
        self.identity = identity
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = self._read_meta()
        if restart or meta is None:
            self._start_fresh()
        elif meta.get("identity") != identity:
            raise RunMismatchError(self._mismatch_message(meta.get("identity") or {}))
        self.meta = self._read_meta() or {}
        self.n_done, self.last = recover_results(self.path)
        self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._session_start = time.time()
        self.session_written = 0

    def _read_meta(self) -> dict[str, Any] | None:
        if not self.meta_path.exists():
            return None
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.meta_path}: not valid JSON ({e}); use --restart") from e

    def _start_fresh(self) -> None:
        for name in (RESULTS, *DERIVED):
            (self.run_dir / name).unlink(missing_ok=True)
        _write_json_atomic(self.meta_path, {"identity": self.identity, "sessions": []})

    def _mismatch_message(self, old: dict[str, Any]) -> str:
        keys = sorted(
            k for k in set(old) | set(self.identity) if old.get(k) != self.identity.get(k)
        )
        parts = [f"{k}: {old.get(k)!r} -> {self.identity.get(k)!r}" for k in keys]
        return (
            f"{self.run_dir}: holds a run with a different "
            f"{' and '.join(keys)} ({'; '.join(parts)}); pass --restart to discard it "
            "or choose another --out"
        )

    def check_resume_point(self, index: int, path: str) -> None:
        """Fail when the input at the last written index is not the one on disk."""
        if self.last is not None and index == self.last["index"] and path != self.last["path"]:
            raise RunMismatchError(
                f"{self.path}: input #{index} was {self.last['path']!r} and is now {path!r}; "
                "the input folders changed since the interrupted run, pass --restart"
            )

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append a batch (records in index order, continuing the file) durably."""
        if not records:
            return
        lines = []
        for rec in records:
            if rec["index"] != self.n_done:
                raise RuntimeError(f"out-of-order result {rec['index']}, expected {self.n_done}")
            lines.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False))
            self.n_done += 1
        self._f.write(("\n".join(lines) + "\n").encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.session_written += len(records)

    def close(self, stats: dict[str, Any] | None = None) -> None:
        """Close the file and record this session (wall time, counts) in ``run.json``."""
        if self._f.closed:
            return
        self._f.close()
        meta = self._read_meta() or {"identity": self.identity, "sessions": []}
        meta.setdefault("sessions", []).append(
            {
                "started": self._session_start,
                "wall_s": round(time.time() - self._session_start, 3),
                "written": self.session_written,
                **(stats or {}),
            }
        )
        _write_json_atomic(self.meta_path, meta)


def iter_results(run_dir: str | Path):
    """Stream the records of ``RUN_DIR/results.jsonl`` (one dict at a time)."""
    path = Path(run_dir) / RESULTS
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                yield json.loads(line)
