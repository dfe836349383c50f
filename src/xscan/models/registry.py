"""The model registry: architecture name -> builder taking a :class:`~xscan.spec.ModelSpec`.

Builders read everything they need from the spec (``num_classes = len(spec.class_names)``,
``spec.in_channels``, ``spec.input_size``, ``spec.arch_params``); they never read files or
configs. Registering a name twice is an error, so two modules cannot silently shadow each other.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from xscan.spec import ModelSpec

ModelBuilder = Callable[[ModelSpec], nn.Module]

_REGISTRY: dict[str, tuple[str, ModelBuilder]] = {}


def register_model(name: str, task: str = "detect") -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(spec) -> nn.Module`` under ``name`` for ``task``.

    Raises ``ValueError`` if ``name`` is already registered.
    """

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model architecture {name!r} is already registered")
        _REGISTRY[name] = (task, builder)
        return builder

    return decorate


def registered_models(task: str | None = None) -> list[str]:
    """Names of registered architectures, optionally only those for ``task``."""
    return sorted(n for n, (t, _) in _REGISTRY.items() if task is None or t == task)


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the network named by ``spec.arch`` with randomly initialised weights."""
    if spec.arch not in _REGISTRY:
        raise ValueError(
            f"model.arch: unknown architecture {spec.arch!r}; registered: {registered_models()}"
        )
    task, builder = _REGISTRY[spec.arch]
    if task != spec.task:
        raise ValueError(
            f"model.arch: {spec.arch!r} is a {task!r} architecture but model.task is {spec.task!r}"
        )
    return builder(spec)
