"""The edge install has no PyTorch: the runtime, scoring and service must import without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch.") or name == "torchvision":
                raise ImportError(f"torch is blocked in this test (import of {name!r})")
            return None

    sys.meta_path.insert(0, BlockTorch())
    packages = ["xscan.runtime", "xscan.score", "xscan.serve"]
    imported = []
    for pkg in packages:
        mod = importlib.import_module(pkg)
        imported.append(pkg)
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    from xscan.runtime import load_model
    import numpy as np
    model = load_model(sys.argv[1], threads=1)
    pred = model.predict(np.full((40, 60, 3), 90, np.uint8))
    assert pred.num_detections > 0
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    print("OK", " ".join(imported))
    """
)


def test_runtime_imports_and_runs_without_torch(toy_detector_onnx):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(toy_detector_onnx)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK")
    imported = out.stdout.split()
    for name in (
        "xscan.runtime.detector",
        "xscan.runtime.session",
        "xscan.runtime.tiling",
        "xscan.runtime.commands",
        "xscan.score",
        "xscan.serve",
    ):
        assert name in imported
