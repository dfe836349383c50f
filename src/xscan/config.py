"""Typed experiment configs loaded from YAML.

An experiment config has the sections ``model`` (the fields of :class:`~xscan.spec.ModelSpec`,
validated into one), ``data``, ``train``, ``eval`` and ``export``. Unknown keys anywhere are an
error that names the file and the key path; ``--set a.b=v`` overrides are applied before
validation (values parsed as YAML scalars); the resolved config is saved beside outputs with
:func:`save_resolved`.

Fields that belong to the model's contract (class names, input size, normalisation,
thresholds) live only in the ``model`` section, never duplicated in other sections.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from xscan.spec import ModelSpec, SpecError


class ConfigError(ValueError):
    """A config is invalid; the message names the file and the key path."""


@dataclass
class DataSource:
    """One source of training/evaluation scans.

    ``kind`` names a reader (``coco``, ``yolo``, ``voc``, ``sixray``, ``opixray``, ``hixray``,
    ``pidray``, ``clcxray``, ``gdxray``, ``xray_real_dev``, ``xscan`` for a folder written by
    ``xscan synth``), ``synth`` for scans generated online, or ``tip`` for threat image
    projection into benign backgrounds. ``params`` holds kind-specific options.
    """

    kind: str
    path: str | None = None
    split: str | None = None
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    train: list[DataSource] = field(default_factory=list)
    val: list[DataSource] = field(default_factory=list)
    test: list[DataSource] = field(default_factory=list)
    # "canonical" maps every dataset's class names through the taxonomy; "native" keeps them.
    taxonomy: str = "canonical"
    # Scans drawn per epoch from a weighted mixture (online sources are endless).
    samples_per_epoch: int = 2000
    num_workers: int = 2
    # Keep the decoded images of offline sources in memory after their first read, so later
    # epochs and validation passes skip the file read and decode (each loader worker process
    # keeps its own copy; left off when it would take over half the machine's memory). It cut
    # the data wait of the 256-px baggage recipes but did not make their runs faster, so they
    # leave it off (docs/benchmarks.md, "Training data throughput").
    cache_images: bool = False
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 10.0
    ema: bool = True
    ema_decay: float = 0.999
    amp: bool = True  # CUDA only; ignored on CPU unless bf16 is requested
    bf16_cpu: bool = False
    device: str = "auto"
    out_dir: str = "runs/train"
    time_limit_min: float | None = None  # hard stop, checked after every step
    # Optimiser steps of the whole run: when set, replaces epochs x steps per epoch (the last
    # epoch stops part-way) and the learning-rate schedule ends on that step.
    steps: int | None = None
    # Wall-clock minutes for the training steps and their validation passes: the run measures
    # its speed over steps 5-35 and fixes `steps` to fit (replaces `epochs`; an explicit
    # `steps` wins). The resolved config.yaml records the planned steps. See
    # xscan.train.budget.
    time_budget_min: float | None = None
    eval_every: int = 1
    log_every: int = 10
    threads: int | None = None
    # NHWC layout for the network and its batches: oneDNN trains MobileNetV3's depthwise
    # convolutions ~1.5x faster on CPU this way (docs/benchmarks.md, "Detector training").
    channels_last: bool = True
    init_weights: str | None = None  # local backbone/model weights, never downloaded
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    far_targets: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.10])
    default_far: float = 0.05
    iou_thresholds: list[float] | None = None


@dataclass
class ExportConfig:
    opset: int = 17
    fp16: bool = False
    int8: bool = False
    int8_max_ap50_drop: float = 0.01
    simplify: bool = True


@dataclass
class ExperimentConfig:
    name: str
    model: ModelSpec
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    source: str = ""  # file it was loaded from (not part of the YAML)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d.pop("source", None)
        return d


# ---------------------------------------------------------------------------- loading


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{source}: {where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    return value


def _load_dataclass(cls: type, data: Any, where: str, source: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'top level'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        keys = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        raise ConfigError(f"{source}: unknown key(s) {keys}; known here: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key {path}")
            continue
        if hints[name] is ModelSpec:
            try:
                kwargs[name] = ModelSpec.from_dict(data[name], source=f"{source}: {path}")
            except (SpecError, TypeError) as e:
                raise ConfigError(str(e)) from e
        else:
            kwargs[name] = _convert(hints[name], data[name], path, source)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (["a", "b", "c"], value); the value is a YAML scalar/list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({e})") from e
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides or []:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            if p.isdigit() and isinstance(node, list):
                node = node[int(p)]
                continue
            if not isinstance(node.get(p), (dict, list)):
                node[p] = {}
            node = node[p]
        last = parts[-1]
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


def config_from_dict(
    data: dict[str, Any], source: str = "<config>", overrides: list[str] | None = None
) -> ExperimentConfig:
    data = apply_overrides(data, overrides)
    cfg = _load_dataclass(ExperimentConfig, data, "", source)
    cfg.source = source
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config, apply ``--set`` overrides, validate everything."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    return config_from_dict(data, source=str(path), overrides=overrides)


def save_resolved(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the fully resolved config (defaults filled in) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
