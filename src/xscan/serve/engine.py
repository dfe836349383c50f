"""The model holder: load, warm, and swap models atomically while requests keep flowing.

Each request takes a snapshot of :attr:`ModelEngine.current` (a :class:`ServedModel`) when
it arrives, is prepared for that model and is inferred on that same model: a reload replaces
the reference (one assignment, atomic in Python) and requests already in flight finish on
the old model, which is freed when the last of them is answered. A new model that fails to
load or to run its warm-up batch never replaces the one being served.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xscan.preprocess import LetterboxInfo
from xscan.serve.audit import utc_now_iso

log = logging.getLogger("xscan.serve")


class ReloadInProgress(RuntimeError):
    """Another reload is running; reloads are serialised."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded or warmed; the message says why."""


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded, warmed model and where it came from. ``model`` is an ``xscan.runtime`` model
    (``Detector`` or ``AnomalyScorer``)."""

    model: Any
    path: Path
    generation: int
    loaded_at: str
    warmup_ms: float
    info_cache: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> Any:
        return self.model.spec

    @functools.cached_property
    def batch_limit(self) -> int | None:
        """The model's fixed batch size (an export with a static batch axis), else ``None``."""
        return fixed_batch_size(self.model)

    def info(self) -> dict[str, Any]:
        """Identity of the model for responses, logs and ``/v1/model``."""
        if not self.info_cache:
            spec = self.model.spec
            op = spec.operating_point
            self.info_cache.update(
                {
                    "name": spec.name,
                    "version": spec.version,
                    "task": spec.task,
                    "sha256": self.model.model_sha256,
                    "file": self.path.name,
                    "providers": list(self.model.providers),
                    "operating_point": op.name if op is not None else None,
                    "threshold": float(spec.alarm_threshold),
                    "generation": self.generation,
                    "loaded_at": self.loaded_at,
                }
            )
        return dict(self.info_cache)


def fixed_batch_size(model: Any) -> int | None:
    """The static batch dimension of ``model``'s input, or ``None`` when it is dynamic."""
    try:
        dim = model.session.session.get_inputs()[0].shape[0]
    except (AttributeError, IndexError):
        return None
    return dim if isinstance(dim, int) and dim > 0 else None


def _default_loader(path: Path, providers: Sequence[str] | None, threads: int | None) -> Any:
    from xscan.runtime import load_model

    return load_model(path, providers=providers, threads=threads)


class ModelEngine:
    """Holds the served model; :meth:`load` and :meth:`reload` are serialised."""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        warmup_batches: Sequence[int] = (1, 8),
        warmup_runs: int = 2,
        loader: Callable[[Path, Sequence[str] | None, int | None], Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.providers = list(providers) if providers else None
        self.threads = threads
        self.warmup_batches = tuple(sorted({max(1, int(b)) for b in warmup_batches}))
        self.warmup_runs = int(warmup_runs)
        self._loader = loader or _default_loader
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self._generation = 0
        self.last_error: str | None = None

    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def _warm(self, model: Any) -> float:
        """Run zero batches of every warm-up size; returns the milliseconds it took."""
        spec = model.spec
        limit = fixed_batch_size(model)
        t0 = time.perf_counter()
        for b in sorted({min(b, limit or b) for b in self.warmup_batches}):
            h, w = spec.input_size
            batch = np.full((b, spec.in_channels, h, w), 0.5, np.float32)
            info = LetterboxInfo(1.0, 1.0, 0.0, 0.0, h, w)
            for _ in range(max(1, self.warmup_runs)):
                preds = model.infer_prepared(batch, [info] * b)
                if len(preds) != b:
                    raise ModelLoadError(f"warm-up batch of {b} gave {len(preds)} predictions")
        return (time.perf_counter() - t0) * 1000.0

    def _load(self, path: Path) -> ServedModel:
        t0 = time.perf_counter()
        try:
            model = self._loader(path, self.providers, self.threads)
            warm_ms = self._warm(model)
        except FileNotFoundError as e:
            raise ModelLoadError(str(e)) from e
        except Exception as e:  # any failure: the old model keeps serving
            raise ModelLoadError(f"{path}: {type(e).__name__}: {e}") from e
        self._generation += 1
        served = ServedModel(model, path, self._generation, utc_now_iso(), warm_ms)
        log.info(
            "model %s v%s (%s, sha256 %s…) loaded and warmed in %.0f ms",
            model.spec.name,
            model.spec.version,
            path.name,
            model.model_sha256[:12],
            (time.perf_counter() - t0) * 1000.0,
        )
        return served

    def load(self) -> ServedModel:
        """Load and warm the model at :attr:`path` (the start-up load)."""
        return self.reload(None, wait=True)

    def reload(self, path: str | Path | None = None, wait: bool = False) -> ServedModel:
        """Load and warm ``path`` (default: the current path, re-read from disk) and swap it
        in. Raises :class:`ModelLoadError` (the old model keeps serving) or
        :class:`ReloadInProgress` when another reload runs and ``wait`` is false."""
        if not self._lock.acquire(blocking=wait):
            raise ReloadInProgress("a model reload is already in progress")
        try:
            target = Path(path) if path is not None else self.path
            try:
                served = self._load(target)
            except ModelLoadError as e:
                self.last_error = str(e)
                raise
            self._current = served  # the atomic swap
            self.path = target
            self.last_error = None
            return served
        finally:
            self._lock.release()
