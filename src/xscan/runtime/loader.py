"""Opening an exported model file as the right runtime class, and the shipped default model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from xscan.runtime.anomaly import AnomalyScorer
from xscan.runtime.detector import Detector
from xscan.runtime.metadata import ModelFileError, spec_from_metadata
from xscan.runtime.model import OnnxModel
from xscan.runtime.session import read_metadata, resolve_providers

# The models shipped in the repository's models/ folder, by task.
DEFAULT_MODELS = {"detect": "xscan-detector-baggage.onnx", "anomaly": "xscan-anomaly-cargo.onnx"}
MODELS_DIR_ENV = "XSCAN_MODELS_DIR"


def load_model(
    path: str | Path,
    providers: Sequence[str] | str | None = None,
    threads: int | None = None,
    **kwargs,
) -> Detector | AnomalyScorer:
    """Open an exported model as a :class:`Detector` or :class:`AnomalyScorer` by its
    ``spec.task``. ``providers``: ``cpu`` (default), ``cuda``, ``tensorrt``, ``openvino`` or
    full onnxruntime names; an unavailable one raises. Other keyword arguments (``tiling``,
    ``max_downscale``, ``batch_size``) go to :class:`OnnxModel`."""
    resolve_providers(providers)  # an unavailable provider fails before the file is read
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    spec = spec_from_metadata(read_metadata(path), str(path))
    classes: dict[str, type[OnnxModel]] = {"detect": Detector, "anomaly": AnomalyScorer}
    if spec.task not in classes:
        raise ModelFileError(f"{path}: spec.task {spec.task!r} has no runtime class")
    return classes[spec.task](path, providers=providers, threads=threads, **kwargs)


def models_dirs() -> list[Path]:
    """Where shipped models are looked for: ``$XSCAN_MODELS_DIR``, then the repository's
    ``models/`` folder."""
    dirs = []
    if os.environ.get(MODELS_DIR_ENV):
        dirs.append(Path(os.environ[MODELS_DIR_ENV]))
    dirs.append(Path(__file__).resolve().parents[3] / "models")
    return dirs


def default_model_path(task: str = "detect") -> Path:
    """The shipped default model for ``task``; FileNotFoundError naming where it looked."""
    if task not in DEFAULT_MODELS:
        raise ValueError(f"no default model for task {task!r}; have {sorted(DEFAULT_MODELS)}")
    looked = []
    for d in models_dirs():
        p = d / DEFAULT_MODELS[task]
        if p.is_file():
            return p
        looked.append(str(p))
    raise FileNotFoundError(
        f"no default {task} model found (looked at {looked}); build it with "
        "scripts/build_default_model.sh or name a model file"
    )
