"""ONNX export from a checkpoint alone.

``checkpoint -> ModelSpec + weights -> build_model(spec) -> build_inference_module`` (images in
[0, 1] to final detections or anomaly map + score, normalisation and decode inside) ->
legacy ``torch.onnx.export`` (opset 17, dynamic batch axis) -> spec JSON under
``metadata_props["xscan.spec"]`` (with ``weights_sha256``) -> ``onnx.checker`` + strict shape
inference -> onnxslim (the dynamic batch axis is verified to survive) -> checks again ->
parity gate against PyTorch on generated scans. Nothing is asked of the user that the spec
already says: image size, classes, normalisation and thresholds all come from the checkpoint.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from xscan.export.metadata import output_names, set_spec
from xscan.export.parity import (
    ParityError,
    ParityReport,
    check_parity,
    prepared_batch,
    synthetic_scans,
)
from xscan.spec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    path: Path
    spec: ModelSpec
    parity: ParityReport | None
    settings: dict[str, Any] = field(default_factory=dict)


def load_for_export(checkpoint: str | Path) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """``(inference module in eval mode, spec with weights_sha256, checkpoint dict)``."""
    from xscan.models import build_inference_module, build_model
    from xscan.train.checkpoint import load_checkpoint, weights_sha256

    ckpt = load_checkpoint(checkpoint)
    spec: ModelSpec = ckpt["spec"]
    model = build_model(spec)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{checkpoint}: weights do not fit spec.arch {spec.arch!r}: {e}") from e
    spec = spec.replace(weights_sha256=weights_sha256(ckpt["model"]))
    module = build_inference_module(model.eval(), spec).eval()
    return module, spec, ckpt


def _dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    return {name: {0: "batch"} for name in ("images", *output_names(spec))}


def torch_to_onnx(
    module: nn.Module, spec: ModelSpec, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """Trace ``module`` with the legacy exporter; batch axis dynamic on every input/output."""
    h, w = spec.input_size
    # A batch of 2 so that no size is specialised to 1 while tracing.
    sample = torch.rand(2, spec.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (see MEASURED.md); its deprecation notice
        # and tracer warnings about shape-dependent Python values are expected here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (sample,),
            buf,
            input_names=["images"],
            output_names=list(output_names(spec)),
            dynamic_axes=_dynamic_axes(spec),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def check_model(model: onnx.ModelProto, spec: ModelSpec, where: str) -> onnx.ModelProto:
    """``onnx.checker`` (full) and strict shape inference; the batch axis must be symbolic and
    the IO names must follow the contract. Returns the shape-inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ValueError(f"{where}: the exported graph fails the ONNX checks: {e}") from e
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != ["images"] or outputs != list(output_names(spec)):
        raise ValueError(
            f"{where}: graph IO {inputs} -> {outputs}; expected ['images'] -> "
            f"{list(output_names(spec))}"
        )
    for vi in [*model.graph.input, *model.graph.output]:
        dim0 = vi.type.tensor_type.shape.dim[0]
        if not dim0.dim_param or dim0.HasField("dim_value"):
            raise ValueError(f"{where}: {vi.name} lost its dynamic batch axis ({dim0})")
    return inferred


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim (constant folding, fusion, dead-code removal); the batch axis stays dynamic."""
    import onnxslim

    return onnxslim.slim(model)


def _count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def build_onnx(
    module: nn.Module, spec: ModelSpec, opset: int = DEFAULT_OPSET, slim: bool = True
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Export, check, simplify and check again; the spec is written into the metadata."""
    t0 = time.perf_counter()
    model = torch_to_onnx(module, spec, opset)
    check_model(model, spec, "exported graph")
    stats: dict[str, Any] = {"opset": opset, "nodes_exported": _count(model)}
    if slim:
        model = simplify(model)
        check_model(model, spec, "simplified graph")
    stats["nodes"] = _count(model)
    stats["simplified"] = slim
    set_spec(model, spec)
    check_model(model, spec, "final graph")
    stats["export_seconds"] = round(time.perf_counter() - t0, 2)
    return model, stats


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write atomically (temp file, then rename) so a failed export leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def run_torch(module: nn.Module, spec: ModelSpec, batch: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = module(torch.from_numpy(np.ascontiguousarray(batch)))
    return {n: o.detach().cpu().numpy() for n, o in zip(output_names(spec), outs, strict=True)}


def run_onnx(path: str | Path, batch: np.ndarray, providers: str = "cpu") -> dict[str, np.ndarray]:
    from xscan.runtime.session import open_session

    return open_session(path, providers=providers).run(batch)


def parity_gate(
    module: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    n_images: int = 8,
    seed: int = 0,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> ParityReport:
    """PyTorch vs onnxruntime on ``n_images`` generated scans; raises :class:`ParityError`
    (with the max errors) past tolerance."""
    batch = prepared_batch(spec, synthetic_scans(spec, n_images, seed))
    ref = run_torch(module, spec, batch)
    got = run_onnx(path, batch)
    box_atol = atol + rtol * max(spec.input_size)
    report = check_parity(spec, ref, got, rtol=rtol, atol=atol, box_atol=box_atol)
    if not report.ok:
        raise ParityError(
            f"{path}: ONNX output differs from PyTorch: {'; '.join(report.problems)} "
            f"({report.summary()})"
        )
    return report


def export_module(
    module: nn.Module,
    spec: ModelSpec,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    slim: bool = True,
    parity_images: int = 8,
    seed: int = 0,
) -> ExportResult:
    """Export an inference module; the file is removed again if the parity gate fails."""
    model, stats = build_onnx(module, spec, opset, slim)
    path = save_model(model, out)
    try:
        report = parity_gate(module, spec, path, parity_images, seed)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    log.info("exported %s (%d nodes); parity: %s", path, stats["nodes"], report.summary())
    settings = {**stats, "precision": "fp32", "parity_images": parity_images, "seed": seed}
    return ExportResult(path=path, spec=spec, parity=report, settings=settings)


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    opset: int = DEFAULT_OPSET,
    slim: bool = True,
    parity_images: int = 8,
    seed: int = 0,
) -> ExportResult:
    """Checkpoint -> FP32 ONNX file at ``out`` with the spec in its metadata, parity-gated."""
    module, spec, _ = load_for_export(checkpoint)
    result = export_module(module, spec, out, opset, slim, parity_images, seed)
    result.settings["checkpoint"] = str(checkpoint)
    return result
