"""``xscan synth`` through the real command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

XSCAN = Path(sys.executable).parent / "xscan"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(XSCAN), "synth", *args], capture_output=True, text=True, timeout=300)


def test_synth_writes_the_dataset_folder(tmp_path):
    out = tmp_path / "cargo"
    r = _run(
        "--kind",
        "cargo",
        "--n",
        "2",
        "--size",
        "192x96",
        "--seed",
        "4",
        "--out",
        str(out),
        "--threat-fraction",
        "1",
        "--workers",
        "2",
    )
    assert r.returncode == 0, r.stderr
    assert "wrote 2 cargo scans (2 with threats)" in r.stdout
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]][:2] == ["concealed_compartment", "drugs_like"]
    assert all(im["kind"] == "cargo" and im["width"] == 192 for im in coco["images"])
    assert coco["annotations"], "threat scans must carry annotated anomalies"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arguments"]["size"] == "192x96"
    assert manifest["generator_version"]
    assert sorted(p.name for p in (out / "raw").iterdir())[:2] == [
        "cargo_000000_high.png",
        "cargo_000000_low.png",
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--n", "-2"], "--n"),
        (["--kind", "truck"], "--kind"),
        (["--size", "512"], "--size"),
        (["--size", "8x8"], "size 8x8"),
        (["--threat-fraction", "2"], "threat fraction"),
        (["--clutter", "extreme"], "clutter"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_bad_arguments_give_a_one_line_error(tmp_path, args, message):
    r = _run("--out", str(tmp_path / "o"), "--size", "64x64", "--n", "1", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xscan synth: error:"), r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = _run("--out", str(blocker / "sub"), "--size", "64x64", "--n", "1")
    assert r.returncode == 2
    assert "output folder is not writable" in r.stderr and str(blocker) in r.stderr
