from __future__ import annotations

import subprocess
import sys

from xscan import __version__


def test_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "xscan", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "xscan", "--help"], capture_output=True, text=True, check=True
    )
    assert "xscan" in out.stdout
