"""The real commands in subprocesses: export (with a refused INT8), info, predict."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from xscan.export.parity import synthetic_scans
from xscan.runtime import load_model


def _xscan(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "xscan", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


@pytest.mark.slow
def test_export_refuses_int8_past_the_gate(tiny_checkpoint, labelled_folder, bags_folder, tmp_path):
    out = tmp_path / "model.onnx"
    r = _xscan(
        "export", tiny_checkpoint, "--out", out, "--parity-images", "2",
        "--int8", "--calib", labelled_folder, "--calib", bags_folder, "--calib-count", "4",
        "--gate-data", labelled_folder, "--gate-bags", bags_folder, "--max-drop", "-1",
    )  # fmt: skip
    # An impossible tolerance: FP32 is written, INT8 is refused with the numbers, exit 3.
    assert r.returncode == 3, r.stderr
    assert "REFUSED" in r.stderr and "AP50 fp32" in r.stderr and "drop" in r.stderr
    assert "detection rate at 5 % false alarms" in r.stderr and "6 benign scans" in r.stderr
    assert out.is_file() and not (tmp_path / "model.int8.onnx").exists()
    assert "parity:" in r.stdout
    card = json.loads((tmp_path / "model.card.json").read_text())
    model = load_model(out)
    assert card["sha256"] == model.model_sha256
    assert card["spec"] == model.spec.to_dict()
    assert card["parity"]["unmatched"] == 0


def test_info_and_predict(tiny_export, tmp_path):
    out = tiny_export.path
    model = load_model(out)
    r = _xscan("info", out)
    assert r.returncode == 0, r.stderr
    for text in ("firearm, knife", "64x96", "false_color", "far5", model.model_sha256):
        assert text in r.stdout
    r = _xscan("info", out, "--json")
    info = json.loads(r.stdout)
    assert info["spec"] == model.spec.to_dict() and info["sha256"] == model.model_sha256

    image = synthetic_scans(model.spec, 1, seed=11)[0]
    img_path = tmp_path / "scan.png"
    cv2.imwrite(str(img_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    r = _xscan("predict", out, img_path, "--json", "--save-overlay", tmp_path / "ov")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    expected = model.predict(image).to_dict()
    assert rec["detections"] == expected["detections"] and rec["alarm"] == expected["alarm"]
    assert rec["detections"], "the scan should give detections to draw"
    overlay = cv2.imread(rec["overlay"])
    assert overlay is not None and overlay.shape[:2] == image.shape[:2]
    r = _xscan("predict", out, img_path, "--threshold", "0.99")
    assert r.returncode == 0 and "clear" in r.stdout and "threshold 0.9900" in r.stdout


def test_cli_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    r = _xscan("info", bad)
    assert r.returncode == 2 and "broken.onnx" in r.stderr and "Traceback" not in r.stderr
    r = _xscan("predict", bad, tmp_path / "x.png", "--provider", "cuda")
    assert r.returncode == 2 and "cuda" in r.stderr.lower() and "available" in r.stderr
    r = _xscan("export", tmp_path / "nope.pt", "--out", tmp_path / "m.onnx")
    assert r.returncode == 2 and "nope.pt" in r.stderr
