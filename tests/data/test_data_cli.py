"""Writers round trip, and the real ``xscan data`` command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import make_gdxray, make_opixray, make_pidray, make_yolo

from xscan.data import load_dataset
from xscan.data.writers import write_coco, write_yolo

XSCAN = str(Path(sys.executable).with_name("xscan"))


def _xscan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([XSCAN, *map(str, args)], capture_output=True, text=True, timeout=120)


def _objects(col):
    return sorted(
        (Path(r.image).name, o.label, tuple(round(v, 2) for v in o.box))
        for r in col.records
        for o in r.objects
    )


def test_coco_yolo_coco_round_trip(tmp_path):
    src = load_dataset("pidray", make_pidray(tmp_path / "pidray"))
    coco1 = write_coco(src, tmp_path / "coco1")
    a = load_dataset("coco", coco1)
    assert _objects(a) == _objects(src) and a.class_names == src.class_names
    assert [o.mask for r in a.records for o in r.objects] == [
        o.mask for r in src.records for o in r.objects
    ]
    write_yolo(a, tmp_path / "yolo")
    b = load_dataset("yolo", tmp_path / "yolo")
    write_coco(b, tmp_path / "coco2")
    c = load_dataset("coco", tmp_path / "coco2")
    assert c.class_names == src.class_names
    got, want = _objects(c), _objects(src)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[2] == pytest.approx(w[2], abs=0.01)
    assert not a.errors and not b.errors and not c.errors


def test_cli_convert_writes_coco(tmp_path):
    make_gdxray(tmp_path / "GDXray")
    r = _xscan(
        "data", "convert", "--from", "gdxray", tmp_path / "GDXray", "--to", "coco", tmp_path / "out"
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["firearm"]
    assert len(doc["images"]) == 3 and len(doc["annotations"]) == 2
    assert doc["annotations"][0]["bbox"] == [10.0, 5.0, 40.0, 35.0]
    assert all((tmp_path / "out" / "images" / im["file_name"]).is_file() for im in doc["images"])
    assert "ground_truth.txt:3" in r.stderr  # the broken line is reported


def test_cli_convert_to_yolo_autodetect(tmp_path):
    make_yolo(tmp_path / "y")
    r = _xscan("data", "convert", tmp_path / "y", "--to", "yolo", tmp_path / "y2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "y2" / "labels" / "train" / "a.txt").read_text().count("\n") == 2
    assert "names:\n- firearm\n- knife" in (tmp_path / "y2" / "data.yaml").read_text()


def test_cli_stats_writes_plots(tmp_path):
    make_opixray(tmp_path / "opix")
    r = _xscan("data", "stats", tmp_path / "opix", "--out", tmp_path / "st")
    assert r.returncode == 0, r.stderr
    assert "knife" in r.stdout and "subset:OL1" in r.stdout
    for name in ("class_counts.png", "box_size.png", "box_aspect.png", "image_size.png"):
        assert (tmp_path / "st" / name).read_bytes()[:4] == b"\x89PNG"
    st = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert st["per_class_objects"] == {"knife": 3, "scissors": 1}


def test_cli_check_exit_status_and_report(tmp_path):
    make_opixray(tmp_path / "opix")
    r = _xscan("data", "check", tmp_path / "opix", "--report", tmp_path / "rep.json")
    assert r.returncode == 1
    assert "009102.txt:2: error:" in r.stdout and "009101.jpg" in r.stdout
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["errors"] == 5 and any(p["line"] == 2 for p in rep["problems"])
    clean = load_dataset("pidray", make_pidray(tmp_path / "pid"), split="hidden")
    write_coco(clean, tmp_path / "clean")
    ok = _xscan("data", "check", tmp_path / "clean", "--format", "coco")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _xscan("data", "check", tmp_path / "nowhere")
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_readers_tip_and_commands_import_without_torch():
    code = (
        "import sys, xscan.data, xscan.data.tip, xscan.data.commands, xscan.data.writers\n"
        "assert 'torch' not in sys.modules and 'albumentations' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _bags(folder: Path, n: int = 3) -> Path:
    """Benign 'bags': a grey box with darker items on air, as 8-bit RGB PNG."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((160, 200, 3), 250, np.uint8)
        img[20:140, 25:175] = (200, 170, 120)
        for _ in range(6):
            x, y = rng.integers(30, 150), rng.integers(25, 120)
            img[y : y + 15, x : x + 20] = (90, 120, 60)
        cv2.imwrite(str(folder / f"N{i:03d}.png"), img)
    (folder / "notes.txt").write_text("not a scan")
    return folder


def test_cli_tip_writes_a_dataset_the_readers_take(tmp_path):
    bg = _bags(tmp_path / "bg")
    args = ["data", "tip", bg, "--pattern", "N*.png", "--n", 6, "--size", "128x96"]
    r1 = _xscan(*args, "--seed", 3, "--out", tmp_path / "a")
    assert r1.returncode == 0, r1.stderr
    assert "wrote 6 TIP scans" in r1.stdout and "from 3 benign backgrounds" in r1.stdout
    r2 = _xscan(*args, "--seed", 3, "--workers", 2, "--out", tmp_path / "b")
    assert r2.returncode == 0, r2.stderr
    # the same files whatever the number of workers
    for name in ["annotations.json", *(f"images/{i:06d}.png" for i in range(6))]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    col = load_dataset("xscan", tmp_path / "a")
    assert len(col.records) == 6 and not col.errors
    threats = {"firearm", "firearm_part", "knife", "scissors", "pliers", "wrench", "hammer"}
    threats |= {"baton", "lighter", "explosive_like", "drugs_like"}
    for rec in col.records:
        # shrunk to fit 128x96 with the 200x160 aspect kept
        assert (rec.width, rec.height) == (120, 96)
        assert rec.is_threat and 1 <= len(rec.objects) <= 3
        for o in rec.objects:
            assert o.label in threats
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= rec.width and 0 <= y0 < y1 <= rec.height
            assert o.mask is not None
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert {im["background"] for im in manifest["images"]} <= {"N000.png", "N001.png", "N002.png"}
    r3 = _xscan(*args, "--seed", 4, "--out", tmp_path / "c")
    assert (tmp_path / "c" / "images" / "000000.png").read_bytes() != (
        tmp_path / "a" / "images" / "000000.png"
    ).read_bytes()
    assert r3.returncode == 0


def test_cli_tip_errors_name_the_problem(tmp_path):
    bg = _bags(tmp_path / "bg")
    r = _xscan("data", "tip", bg, "--count", "3-1", "--out", tmp_path / "o")
    assert r.returncode == 2 and "--count: expected 0 <= LO <= HI" in r.stderr
    r = _xscan("data", "tip", bg, "--pattern", "P*.jpg", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no images matching 'P*.jpg'" in r.stderr
    r = _xscan("data", "tip", bg, "--categories", "laptop", "--out", tmp_path / "o")
    assert r.returncode == 2 and "cannot render ['laptop']" in r.stderr
