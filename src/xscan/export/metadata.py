"""Writing the model's contract into an ONNX file (``metadata_props["xscan.spec"]``)."""

from __future__ import annotations

import onnx

from xscan.spec import ANOMALY_OUTPUTS, DETECTOR_OUTPUTS, METADATA_KEY, VIEW_SCORES, ModelSpec


def output_names(spec: ModelSpec) -> tuple[str, ...]:
    """The graph's output names for ``spec.task`` (see docs/architecture.md); a detector with
    ``spec.scan_views`` > 1 also returns ``view_scores (B, views)``."""
    if spec.task != "detect":
        return ANOMALY_OUTPUTS
    return (*DETECTOR_OUTPUTS, VIEW_SCORES) if spec.scan_views > 1 else DETECTOR_OUTPUTS


def set_spec(model: onnx.ModelProto, spec: ModelSpec, extra: dict[str, str] | None = None) -> None:
    """Store ``spec`` as JSON under :data:`METADATA_KEY` (replacing any earlier value), plus
    optional ``extra`` string properties."""
    props = {METADATA_KEY: spec.to_json(), **(extra or {})}
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "xscan"
    model.doc_string = f"{spec.name} {spec.version}: {spec.task} {list(spec.class_names)}"


def get_spec(model: onnx.ModelProto, source: str = "model") -> ModelSpec:
    """The spec stored in ``model`` (ValueError naming ``source`` when there is none)."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return ModelSpec.from_json(p.value, source=f"{source}: {METADATA_KEY}")
    raise ValueError(f"{source}: no '{METADATA_KEY}' metadata")
