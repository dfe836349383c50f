"""Exactly-once results after SIGKILL, torn-line recovery, and refusing mismatched resumes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from scan_folders import load_results, make_folder, run_cli

from xscan.score.store import ResultStore, RunMismatchError, recover_results


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_mid_run(args: list[str], results, at_least: int, extra_delay: float) -> None:
    """Start ``xscan score``, SIGKILL it once ``at_least`` results are on disk + a delay."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XSCAN_SCORE_BATCH_DELAY_S": "0.02"}
    p = subprocess.Popen(
        [sys.executable, "-m", "xscan", "score", *args, "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while _lines(results) < at_least and p.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(extra_delay)
        assert p.poll() is None, "the run finished before it could be killed"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()


def test_sigkill_then_rerun_gives_each_input_exactly_once(tmp_path, toy_detector_onnx):
    root = make_folder(tmp_path / "in", 160, seed=7)
    (root / "lane1" / "bad.png").write_bytes(b"not an image")
    ref = tmp_path / "ref"
    common = [str(toy_detector_onnx), str(root), "--batch-size", "4", "--workers", "2"]
    run_cli("score", *common, "--out", str(ref), "--no-progress")
    expected = load_results(ref)
    assert len(expected) == 161

    rng = random.Random(1234)
    run = tmp_path / "run"
    for kill in range(2):
        at_least = 20 + 50 * kill + rng.randrange(20)
        _kill_mid_run([*common, "--out", str(run)], run / "results.jsonl", at_least,
                      rng.uniform(0.0, 0.05))  # fmt: skip
        n = _lines(run / "results.jsonl")
        assert at_least <= n < 161
    out = run_cli("score", *common, "--out", str(run), "--no-progress")
    assert "scored 160 / 161 inputs, 1 failed" in out.stdout
    assert load_results(run) == expected
    assert (run / "summary.csv").read_text() == (ref / "summary.csv").read_text()
    sessions = json.loads((run / "run.json").read_text())["sessions"]
    assert sessions[-1]["resumed_from"] > 0


def test_torn_last_line_is_cut_and_damage_elsewhere_refused(tmp_path):
    ident = {"model_sha256": "x", "inputs": ["/a"]}
    store = ResultStore(tmp_path, ident)
    store.append([{"index": 0, "path": "a"}, {"index": 1, "path": "b"}])
    store.close()
    path = tmp_path / "results.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"index":2,"pa')  # a write cut short by a kill
    store = ResultStore(tmp_path, ident)
    assert store.n_done == 2 and store.last["path"] == "b"
    store.append([{"index": 2, "path": "c"}])
    store.close()
    assert [json.loads(x)["path"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[2]]) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        recover_results(path)


def test_resume_refused_with_other_model_or_threshold(tmp_path, toy_detector_onnx,
                                                      toy_anomaly_onnx):  # fmt: skip
    root = make_folder(tmp_path / "in", 6)
    run = tmp_path / "run"
    run_cli("score", str(toy_detector_onnx), str(root), "--out", str(run), "--no-progress")
    out = run_cli("score", str(toy_anomaly_onnx), str(root), "--out", str(run), check=False)
    assert out.returncode == 2 and "model_sha256" in out.stderr and "--restart" in out.stderr
    out = run_cli("score", str(toy_detector_onnx), str(root), "--out", str(run), "--threshold",
                  "0.9", check=False)  # fmt: skip
    assert out.returncode == 2 and "threshold" in out.stderr
    # Same identity: nothing left to do, results unchanged.
    before = load_results(run)
    run_cli("score", str(toy_detector_onnx), str(root), "--out", str(run), "--no-progress")
    assert load_results(run) == before
    run_cli("score", str(toy_anomaly_onnx), str(root), "--out", str(run), "--restart",
            "--no-progress")  # fmt: skip
    assert all(r["detections"] == [] for r in load_results(run))
    with pytest.raises(RunMismatchError):
        ResultStore(run, {"model_sha256": "other"})
