"""Networks behind a registry; network, loss and decode kept apart.

``build_model(spec)`` builds the architecture named by ``spec.arch``;
``build_inference_module(model, spec)`` wraps it with its ONNX-ready decode.
"""

from __future__ import annotations

import xscan.models.anomaly_patchcore  # noqa: F401  (registers "anomaly_patchcore")
import xscan.models.anomaly_stfpm  # noqa: F401  (registers "anomaly_stfpm")
from xscan.models import centernet  # noqa: F401  (registers "centernet")
from xscan.models.inference import build_inference_module
from xscan.models.registry import build_model, register_model, registered_models

__all__ = ["build_inference_module", "build_model", "register_model", "registered_models"]
