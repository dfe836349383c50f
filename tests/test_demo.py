"""``xscan demo --quick`` end to end in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_quick_writes_a_report(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, "-m", "xscan", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    reports = [
        line.split("report: ", 1)[1] for line in res.stdout.splitlines() if "report: " in line
    ]
    assert reports, res.stdout
    synthetic = out / "score-synthetic" / "report.html"
    assert str(synthetic) in reports
    page = synthetic.read_text()
    assert "Scoring report" in page and "<svg" in page
    n_lines = (out / "score-synthetic" / "results.jsonl").read_text().count("\n")
    assert n_lines == 12  # QUICK plan: 12 new synthetic scans scored
    assert "UNAVAILABLE" not in res.stdout, res.stdout
