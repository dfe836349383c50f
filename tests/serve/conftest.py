from __future__ import annotations

import signal
from pathlib import Path

import pytest
from serve_procs import TOKEN, make_slow_detector, start_server


@pytest.fixture(scope="session")
def slow_detector_onnx(toy_detector_onnx, tmp_path_factory) -> Path:
    return make_slow_detector(
        toy_detector_onnx, tmp_path_factory.mktemp("slow") / "slow_detector.onnx"
    )


@pytest.fixture(scope="module")
def main_server(toy_detector_onnx, tmp_path_factory):
    """A token-protected server with an audit log and a 1 MB body limit."""
    srv = start_server(
        toy_detector_onnx,
        tmp_path_factory.mktemp("main_server"),
        "--max-body-mb",
        "1",
        "--max-pixels",
        "4000000",
        token=TOKEN,
    )
    yield srv
    srv.stop(signal.SIGTERM)
