from __future__ import annotations

from pathlib import Path

import pytest
from dark_box import dark_box_spec, make_dark_box_detector


@pytest.fixture(scope="session")
def dark_box_onnx(tmp_path_factory) -> Path:
    return make_dark_box_detector(tmp_path_factory.mktemp("dark") / "dark.onnx", dark_box_spec())
