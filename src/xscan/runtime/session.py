"""onnxruntime sessions: explicit execution providers, tuned options, IO binding on GPU.

Providers are chosen explicitly. Asking for one that this onnxruntime build does not offer,
or one that fails to load (missing CUDA libraries make onnxruntime fall back to the CPU with
only a warning), is an error naming what is available: never a silent CPU fallback. The CPU
provider is appended after an accelerator only so that the odd operator the accelerator does
not implement can run; the accelerator itself is verified to be active.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from xscan.runtime.metadata import ModelFileError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
# Providers whose memory is not host memory: inputs/outputs go through IO binding.
_DEVICE_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


class ProviderError(ValueError):
    """A requested execution provider is unknown, not installed or failed to load."""


def resolve_providers(providers: Sequence[str] | str | None) -> list[str]:
    """Map short names (``cpu``, ``cuda``, ``tensorrt``, ``openvino``) or full onnxruntime
    names to full names, checking each is available in this onnxruntime build.

    ``None`` means the CPU provider. Raises :class:`ProviderError` naming what is available.
    """
    if providers is None:
        providers = ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    available = ort.get_available_providers()
    out: list[str] = []
    for p in providers:
        name = PROVIDER_ALIASES.get(p.strip().lower(), p.strip())
        if name not in available:
            raise ProviderError(
                f"execution provider {p!r} ({name}) is not available in this onnxruntime "
                f"{ort.__version__} install; available: {available}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ProviderError(f"no execution provider given; available: {available}")
    return out


def session_options(threads: int | None = None, inter_threads: int = 1) -> ort.SessionOptions:
    """Graph optimisation ALL, explicit thread counts, memory arena and pattern on, thread
    pools that sleep instead of spin-waiting between calls (``XSCAN_ORT_SPIN=1``: spin)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is None:
        threads = int(os.environ.get("XSCAN_THREADS", "0")) or (os.cpu_count() or 1)
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = max(1, int(inter_threads))
    so.enable_cpu_mem_arena = True
    so.enable_mem_pattern = True
    so.log_severity_level = 3  # errors only: provider problems are raised, not logged
    # onnxruntime's thread pools spin-wait between calls unless told not to: good for a bare
    # loop of back-to-back inferences, but xscan's scoring pipeline and service run decode
    # threads and an event loop on the same cores, and the spinning takes the CPU they need
    # (measured on 2 cores: service +33-53 % req/s, full-decode scoring +24 % images/s with
    # spinning off; docs/benchmarks.md). XSCAN_ORT_SPIN=1 turns spinning back on.
    spin = "1" if os.environ.get("XSCAN_ORT_SPIN", "0").strip() == "1" else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


class Session:
    """One onnxruntime session over one model file.

    ``run(images)`` takes ``(B, C, H, W) float32`` and returns ``{output name: array}``.
    Thread-safe (onnxruntime sessions are), so a pipeline may call it from several threads.
    """

    def __init__(self, path: str | Path, providers: list[str], threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: model file not found")
        requested = list(providers)
        ort_providers = requested + (
            ["CPUExecutionProvider"] if "CPUExecutionProvider" not in requested else []
        )
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options(threads), providers=ort_providers
            )
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(
                f"{self.path}: not a loadable ONNX model (truncated or corrupt file?): {msg}"
            ) from e
        active = self.session.get_providers()
        missing = [p for p in requested if p not in active]
        if missing:
            raise ProviderError(
                f"{self.path}: execution provider(s) {missing} failed to load (onnxruntime "
                f"fell back to {active}); check the CUDA/TensorRT/OpenVINO libraries"
            )
        self.providers = [p for p in active if p in requested]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.use_io_binding = requested[0] in _DEVICE_PROVIDERS

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on ``images (B, C, H, W) float32``; returns every output by name."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        name = self.input_names[0]
        if not self.use_io_binding:
            outs = self.session.run(self.output_names, {name: images})
            return dict(zip(self.output_names, outs, strict=True))
        # On a GPU: copy the input once to device memory, let outputs come back to the host.
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(images, "cuda", 0))
        for out in self.output_names:
            binding.bind_output(out, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The model file's ``metadata_props`` as a dict, through onnxruntime (no ``onnx``
    package). The session is created without graph optimisation: only the header is needed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(
            f"{path}: not a loadable ONNX model (truncated or corrupt file?): {msg}"
        ) from e
    return dict(sess.get_modelmeta().custom_metadata_map)


def open_session(
    path: str | Path, providers: Sequence[str] | str | None = None, threads: int | None = None
) -> Session:
    """Open a model file with explicitly chosen providers (see :func:`resolve_providers`)."""
    return Session(path, resolve_providers(providers), threads=threads)
