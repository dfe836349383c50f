"""The torch-free runtime: exported xscan models over onnxruntime.

```python
from xscan.runtime import load_model
model = load_model("model.onnx", providers="cpu", threads=2)
pred = model.predict(read_image("scan.png"))   # Prediction, boxes in original pixels
```

Never imports torch. Attributes load lazily so that ``xscan.runtime.commands`` (imported by
the CLI at start-up) stays standard-library only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "load_model": "xscan.runtime.loader",
    "default_model_path": "xscan.runtime.loader",
    "Detector": "xscan.runtime.detector",
    "AnomalyScorer": "xscan.runtime.anomaly",
    "OnnxModel": "xscan.runtime.model",
    "Prediction": "xscan.runtime.prediction",
    "ModelFileError": "xscan.runtime.metadata",
    "ProviderError": "xscan.runtime.session",
    "read_spec": "xscan.runtime.metadata",
}

__all__ = [
    "AnomalyScorer",
    "Detector",
    "ModelFileError",
    "OnnxModel",
    "Prediction",
    "ProviderError",
    "default_model_path",
    "load_model",
    "read_spec",
]

if TYPE_CHECKING:
    from xscan.runtime.anomaly import AnomalyScorer
    from xscan.runtime.detector import Detector
    from xscan.runtime.loader import default_model_path, load_model
    from xscan.runtime.metadata import ModelFileError, read_spec
    from xscan.runtime.model import OnnxModel
    from xscan.runtime.prediction import Prediction
    from xscan.runtime.session import ProviderError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xscan.runtime' has no attribute {name!r}")
