"""Scoring runs on a torch-free install: the whole ``xscan score`` path with torch blocked."""

from __future__ import annotations

import subprocess
import sys

from scan_folders import make_folder

BLOCK_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTorch())
from xscan.cli import main
rc = main(sys.argv[1:])
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
sys.exit(rc)
"""


def test_score_never_imports_torch(tmp_path, toy_detector_onnx):
    root = make_folder(tmp_path / "in", 5)
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "score", str(toy_detector_onnx), str(root),
         "--out", str(tmp_path / "run"), "--overlays", "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "scored 5 / 5 inputs" in out.stdout
