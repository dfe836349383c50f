from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def toy_detector_onnx(tmp_path_factory) -> Path:
    from toy_models import make_toy_detector

    return make_toy_detector(tmp_path_factory.mktemp("toy") / "toy_detector.onnx")


@pytest.fixture(scope="session")
def toy_anomaly_onnx(tmp_path_factory) -> Path:
    from toy_models import make_toy_anomaly

    return make_toy_anomaly(tmp_path_factory.mktemp("toy") / "toy_anomaly.onnx")
