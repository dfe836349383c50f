"""Which detector a benchmark runs when none is named (shared by bench_score and bench_service).

The first xscan detector ONNX under ``models/`` then ``runs/`` (the shipped default first),
full-precision files before their ``.int8`` / ``.fp16`` twins; with none, the 320x320 toy
detector of the tests, so a checkout without models still benchmarks the pipeline. The
second value says which, for the results.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_model(explicit: str | None, tmp: Path) -> tuple[Path, str]:
    from xscan.runtime import read_spec

    if explicit:
        return Path(explicit), "given"
    for d in (ROOT / "models", ROOT / "runs"):
        found = sorted(d.rglob("*.onnx")) if d.exists() else []
        for p in sorted(found, key=lambda q: (q.name.endswith((".int8.onnx", ".fp16.onnx")), q)):
            try:
                if read_spec(p).task == "detect":
                    return p, "real detector"
            except Exception:  # noqa: BLE001 - not an xscan model
                continue
    sys.path.insert(0, str(ROOT / "tests"))
    from toy_models import make_toy_detector, toy_detector_spec

    spec = toy_detector_spec(input_size=(320, 320))
    return make_toy_detector(tmp / "toy_detector_320.onnx", spec), "toy detector (320x320)"
