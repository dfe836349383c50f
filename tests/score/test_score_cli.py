"""``xscan score`` through the real CLI on generated files."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import cv2
import numpy as np
import pytest
from scan_folders import load_results, make_folder, run_cli, write_rgb

from xscan.imageio import read_image
from xscan.runtime import load_model

RECORD_KEYS_OK = {
    "index",
    "path",
    "kind",
    "sha256",
    "size",
    "width",
    "height",
    "status",
    "image_score",
    "alarm",
    "threshold",
    "tiles",
    "detections",
    "timings_ms",
}


def _bad_folder(root):
    """Good scans of every supported kind plus one file of each failure kind."""
    rng = np.random.default_rng(1)
    good = root / "good"
    write_rgb(good / "rgb8.png", rng)
    write_rgb(good / "rgb8.jpg", rng)
    write_rgb(good / "rgb8.bmp", rng)
    cv2.imwrite(str(good / "gray8.png"), rng.integers(0, 255, (40, 50), dtype=np.uint8))
    cv2.imwrite(str(good / "gray16.png"), rng.integers(0, 65535, (40, 50), dtype=np.uint16))
    cv2.imwrite(str(good / "gray16.tif"), rng.integers(0, 65535, (30, 44), dtype=np.uint16))
    cv2.imwrite(str(good / "rgb16.png"), rng.integers(0, 65535, (36, 40, 3), dtype=np.uint16))
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "not_an_image.png").write_text("this is a text file, not a scan\n")
    jpg = (good / "rgb8.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    png = (good / "rgb8.png").read_bytes()
    (bad / "corrupt.png").write_bytes(png[:40] + bytes(rng.integers(0, 255, 300, np.uint8)))
    cv2.imwrite(str(bad / "oversized.png"), np.full((300, 400), 200, np.uint8))
    return root


def test_failures_reported_rest_scored(tmp_path, toy_detector_onnx):
    root = _bad_folder(tmp_path / "in")
    run = tmp_path / "run"
    out = run_cli(
        "score", str(toy_detector_onnx), str(root), "--out", str(run), "--max-pixels", "100000",
        "--batch-size", "3", "--no-progress",
    )  # fmt: skip
    assert re.search(r"scored 7 / 12 inputs, 5 failed", out.stdout), out.stdout
    assert str(run / "report.html") in out.stdout
    recs = load_results(run, drop_timings=False)
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in recs}
    reasons = {n: r["error"]["reason"] for n, r in by_name.items() if r["status"] == "error"}
    assert reasons == {
        "empty.png": "empty",
        "not_an_image.png": "not_image",
        "truncated.jpg": "truncated",
        "corrupt.png": "corrupt",
        "oversized.png": "oversized",
    }
    for n in reasons:
        assert n in by_name[n]["error"]["message"]  # the message names the file
    ok = [r for r in recs if r["status"] == "ok"]
    assert {r["path"].rsplit("/", 1)[1] for r in ok} == {
        "rgb8.png", "rgb8.jpg", "rgb8.bmp", "gray8.png", "gray16.png", "gray16.tif", "rgb16.png"
    }  # fmt: skip
    assert [r["index"] for r in recs] == list(range(12))
    model = load_model(toy_detector_onnx)
    for r in ok:
        assert set(r) == RECORD_KEYS_OK
        data = open(r["path"], "rb").read()
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["size"] == len(data)
        img = read_image(r["path"])
        assert (r["height"], r["width"]) == img.shape[:2]
        # Same numbers as the runtime gives for the file alone.
        pred = model.predict(img)
        assert abs(r["image_score"] - pred.image_score) < 1e-5
        assert r["alarm"] == bool(pred.alarm) and r["threshold"] == 0.5
        assert len(r["detections"]) == pred.num_detections
        for d, box, s in zip(r["detections"], pred.boxes, pred.scores, strict=True):
            assert set(d) == {"class", "class_id", "score", "box"}
            assert d["class"] == ["knife", "firearm"][d["class_id"]]
            np.testing.assert_allclose(d["box"], box, atol=0.01)
            assert abs(d["score"] - s) < 1e-5
        assert {"read_ms", "decode_ms", "preprocess_ms", "infer_ms"} <= set(r["timings_ms"])


def test_outputs_csv_coco_report(tmp_path, toy_detector_onnx):
    from pycocotools.coco import COCO

    root = make_folder(tmp_path / "in", 10, seed=3)
    (root / "lane0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    run = tmp_path / "run"
    run_cli("score", str(toy_detector_onnx), str(root), "--out", str(run), "--no-progress",
            "--threshold", "0.3")  # fmt: skip
    recs = load_results(run)
    ok = [r for r in recs if r["status"] == "ok"]
    rows = list(csv.DictReader(open(run / "summary.csv")))
    assert [r["path"] for r in rows] == [r["path"] for r in recs]
    assert sum(r["status"] == "error" for r in rows) == 1
    assert all(float(r["threshold"]) == 0.3 for r in rows if r["status"] == "ok")
    coco = COCO(str(run / "coco_images.json"))
    dets = coco.loadRes(str(run / "coco_results.json"))
    assert len(dets.getAnnIds()) == sum(len(r["detections"]) for r in ok)
    first = ok[0]
    anns = dets.loadAnns(dets.getAnnIds(imgIds=[first["index"] + 1]))
    x1, y1, x2, y2 = first["detections"][0]["box"]
    assert anns[0]["bbox"] == [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]
    # The report holds the numbers results.jsonl implies.
    page = (run / "report.html").read_text()
    alarms = sum(r["alarm"] for r in ok)
    assert f'<div class="v">{len(recs)}</div><div class="k">inputs</div>' in page
    assert f'<div class="v">{len(ok)}</div><div class="k">scored</div>' in page
    assert '<div class="v">1</div><div class="k">failed</div>' in page
    assert f'<div class="v">{alarms}</div><div class="k">alarms</div>' in page
    assert f"{100 * alarms / len(ok):.1f}%" in page
    n_knife = sum(d["class"] == "knife" for r in ok for d in r["detections"])
    assert f"<td>knife</td><td class='n'>{n_knife}</td>" in page
    assert "<svg" in page and "data:image/jpeg;base64," in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_anomaly_model_overlays_and_heatmaps(tmp_path, toy_anomaly_onnx):
    root = make_folder(tmp_path / "in", 6, seed=5)
    run = tmp_path / "run"
    run_cli("score", str(toy_anomaly_onnx), str(root), "--out", str(run), "--overlays",
            "--no-progress")  # fmt: skip
    recs = load_results(run)
    assert all(r["status"] == "ok" and r["detections"] == [] for r in recs)
    overlays = sorted((run / "overlays").glob("*.jpg"))
    assert len(overlays) == 6
    ov = cv2.imread(str(overlays[0]))
    src = cv2.imread(recs[0]["path"])
    assert ov.shape == src.shape and np.abs(ov.astype(int) - src).mean() > 5  # heat map drawn
    assert "data:image/jpeg;base64," in (run / "report.html").read_text()


def test_default_model_missing_is_a_clear_error(tmp_path, small_folder):
    out = run_cli("score", str(small_folder), "--out", str(tmp_path / "r"), check=False,
                  env={"XSCAN_MODELS_DIR": str(tmp_path / "none")})  # fmt: skip
    if out.returncode == 0:  # a default model is shipped in models/: it was used
        assert "report:" in out.stdout
    else:
        assert out.returncode == 2 and "default" in out.stderr and "model" in out.stderr


def test_raw_pairs_scored_as_one_input(tmp_path):
    from toy_models import make_toy_detector, toy_detector_spec

    spec = toy_detector_spec().replace(modality="raw_dual")
    model = make_toy_detector(tmp_path / "raw.onnx", spec)
    raw = tmp_path / "in" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for i in range(3):
        lo = rng.integers(20000, 65535, (40, 48), dtype=np.uint16)
        cv2.imwrite(str(raw / f"{i:04d}_low.png"), lo)
        cv2.imwrite(str(raw / f"{i:04d}_high.png"), np.maximum(lo, 30000).astype(np.uint16))
    run = tmp_path / "run"
    run_cli("score", str(model), str(tmp_path / "in"), "--out", str(run), "--no-progress")
    recs = load_results(run)
    assert [r["path"] for r in recs] == [str(raw / f"{i:04d}") for i in range(3)]
    assert all(r["status"] == "ok" and r["kind"] == "raw_pair" for r in recs)
    lo_b = (raw / "0000_low.png").read_bytes()
    hi_b = (raw / "0000_high.png").read_bytes()
    assert recs[0]["sha256"] == hashlib.sha256(lo_b + hi_b).hexdigest()
    assert recs[0]["files"] == [str(raw / "0000_low.png"), str(raw / "0000_high.png")]
    assert json.loads((run / "run.json").read_text())["identity"]["raw_pairs"] is True


def test_coco_ids_from_ground_truth(tmp_path, toy_detector_onnx):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = make_folder(tmp_path / "data", 4, seed=9)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*.*"))
    gt = {
        "images": [
            {"id": 100 + i, "file_name": n, "width": 56, "height": 48} for i, n in enumerate(names)
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 100,
                "category_id": 9,
                "bbox": [0, 0, 28, 24],
                "area": 672,
                "iscrowd": 0,
            }
        ],  # fmt: skip
        "categories": [{"id": 7, "name": "firearm"}, {"id": 9, "name": "knife"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    run = tmp_path / "run"
    run_cli("score", str(toy_detector_onnx), str(root), "--out", str(run), "--no-progress",
            "--coco-gt", str(tmp_path / "gt.json"))  # fmt: skip
    res = json.loads((run / "coco_results.json").read_text())
    assert {r["image_id"] for r in res} == {100, 101, 102, 103}
    assert {r["category_id"] for r in res} == {7, 9}
    recs = {r["path"]: r for r in load_results(run)}
    first = recs[str(root / names[0])]
    knife = [r for r in res if r["image_id"] == 100 and r["category_id"] == 9]
    assert [k["score"] for k in knife] == [
        d["score"] for d in first["detections"] if d["class"] == "knife"
    ]
    coco_gt = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco_gt, coco_gt.loadRes(str(run / "coco_results.json")), "bbox")
    ev.params.imgIds = [100]  # the annotated image: its knife box is the toy model's box
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[1] == pytest.approx(1.0)
