from __future__ import annotations

from pathlib import Path

import pytest
from scan_folders import make_folder


@pytest.fixture
def small_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "scans", 24)
