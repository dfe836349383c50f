"""Reduced JPEG decoding + integer shrink vs the full-resolution path (scoring and service).

Measured on the generated 1500x1000 baggage scans below (JPEG quality 90, decoded at 1/2):
network inputs differ from ``model.prepare(full decode)`` by 0.0005-0.0011 on average and at
most 0.047 (values in [0, 1]); the shipped detector's boxes move by < 1 px in original pixels
and its scores by <= 0.001.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from xscan.imageio import decode_image, decode_image_scaled
from xscan.preprocess import decode_target, prepare_fast
from xscan.runtime import load_model
from xscan.score.discover import InputItem
from xscan.score.pipeline import decode_item
from xscan.serve.app import _decode_and_prepare
from xscan.serve.engine import ServedModel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DETECTOR = ROOT / "models" / "xscan-detector-baggage.onnx"


def _scan_jpeg(seed: int, size_hw=(1000, 1500)) -> bytes:
    from xscan.synth.generator import SynthOptions, generate_scan

    scan = generate_scan("baggage", size_hw, seed, SynthOptions(with_threat=True))
    bgr = cv2.cvtColor(scan.rgb, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture(scope="module")
def detector():
    if not DEFAULT_DETECTOR.exists():
        pytest.skip(f"{DEFAULT_DETECTOR} not present")
    return load_model(DEFAULT_DETECTOR)


@pytest.fixture(scope="module")
def scans() -> list[bytes]:
    return [_scan_jpeg(seed) for seed in (0, 1, 3)]


def _fast(model, data: bytes):
    s = decode_image_scaled(data, min_size_hw=decode_target(model.spec, model.wants_tiling_hw))
    x, info = prepare_fast(s.image, model.spec, (s.orig_h, s.orig_w))
    return s, x, info


def test_network_input_matches_the_full_decode(detector, scans):
    for data in scans:
        ref_x, ref_info = detector.prepare(decode_image(data))
        s, x, info = _fast(detector, data)
        assert s.factor == 2 and (s.orig_h, s.orig_w) == (1000, 1500)
        assert info == ref_info  # same letterbox, boxes map to original pixels alike
        d = np.abs(x - ref_x)
        assert d.mean() < 0.003 and d.max() < 0.08, (d.mean(), d.max())


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each ``(N, 4)`` xyxy box with one box."""
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 2], box[2])
    y1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def test_detections_agree_with_the_full_decode(detector, scans):
    thr = detector.spec.score_threshold
    matched = 0
    for data in scans:
        ref_x, ref_info = detector.prepare(decode_image(data))
        _, x, info = _fast(detector, data)
        ref, new = detector.infer_prepared(np.stack([ref_x, x]), [ref_info, info])
        assert abs(ref.image_score - new.image_score) < 0.02
        # Every confident detection of one path is in the other: same class, score within
        # 0.02, box IoU >= 0.7 (a peak may move to the neighbouring heatmap cell, whose box
        # regression differs by a few input pixels). Near the score threshold one may drop out.
        for a, b in ((ref, new), (new, ref)):
            for box, score, cls in zip(a.boxes, a.scores, a.classes, strict=True):
                if score < thr + 0.02:
                    continue
                ok = (b.classes == cls) & (np.abs(b.scores - score) < 0.02)
                ok &= _iou(b.boxes, box) >= 0.7
                assert ok.any(), (box, score, cls, b.boxes, b.scores)
                matched += 1
    assert matched >= 4  # the comparison is not vacuous


def test_pipeline_reports_original_size_and_maps_boxes(detector, scans, tmp_path):
    p = tmp_path / "scan.jpg"
    p.write_bytes(scans[1])
    d = decode_item(
        InputItem(0, str(p), (str(p),)), detector, 10**8, keep_image=False, reduce_margin=2.0
    )
    assert d.error is None and not d.tiled
    assert (d.width, d.height) == (1500, 1000)
    assert d.info.orig_w == 1500 and d.info.orig_h == 1000
    full = decode_item(
        InputItem(0, str(p), (str(p),)), detector, 10**8, keep_image=False, reduce_margin=0
    )
    assert full.info == d.info
    assert np.abs(full.chw - d.chw).mean() < 0.003
    # The default is the full decode: the preprocessing of training and xscan eval.
    default = decode_item(InputItem(0, str(p), (str(p),)), detector, 10**8, keep_image=False)
    assert np.abs(default.chw - full.chw).max() == 0
    # Overlays are drawn on the decoded original: never reduced then.
    kept = decode_item(
        InputItem(0, str(p), (str(p),)), detector, 10**8, keep_image=True, reduce_margin=2.0
    )
    assert kept.image.shape == (1000, 1500, 3)


def test_tiled_images_are_decoded_at_full_resolution(toy_detector_onnx, scans, tmp_path):
    p = tmp_path / "scan.jpg"
    p.write_bytes(scans[0])
    item = InputItem(0, str(p), (str(p),))
    # The 64x64 toy detector tiles a 1500x1000 scan (fitting it whole shrinks it > 8x).
    for model in (load_model(toy_detector_onnx), load_model(toy_detector_onnx, tiling="always")):
        assert model.wants_tiling_hw(1000, 1500)
        d = decode_item(item, model, 10**8, keep_image=False, reduce_margin=2.0)
        assert d.error is None and d.tiled
        assert d.image.shape == (1000, 1500, 3) and (d.width, d.height) == (1500, 1000)
        served = ServedModel(model, Path("toy.onnx"), 1, "now", 0.0)
        tensor, info, image, facts = _decode_and_prepare(scans[0], served, 10**8, "req", 2.0)
        assert tensor is None and image.shape == (1000, 1500, 3)
        assert (facts["width"], facts["height"]) == (1500, 1000)
    # Not tiled: the same toy model decodes the scan reduced (at 1/8: 188x125 >= 2 x 64x43).
    model = load_model(toy_detector_onnx, tiling="never")
    d = decode_item(item, model, 10**8, keep_image=False, reduce_margin=2.0)
    assert not d.tiled and d.chw.shape == (3, 64, 64) and (d.width, d.height) == (1500, 1000)


def test_service_prepares_like_the_pipeline(detector, scans):
    served = ServedModel(detector, DEFAULT_DETECTOR, 1, "now", 0.0)
    tensor, info, image, facts = _decode_and_prepare(scans[2], served, 10**8, "req", 2.0)
    assert image is None and (facts["width"], facts["height"]) == (1500, 1000)
    assert facts["format"] == "jpeg" and facts["dtype"] == "uint8"
    ref_x, ref_info = detector.prepare(decode_image(scans[2]))
    assert info == ref_info and np.abs(tensor - ref_x).mean() < 0.003
    # Reduction off: the full decode, shrunk on integers (within 2e-5 of model.prepare).
    tensor0, info0, _, _ = _decode_and_prepare(scans[2], served, 10**8, "req")
    assert info0 == ref_info and np.abs(tensor0 - ref_x).max() < 2e-5


def test_decode_margin_reaches_the_run_identity_and_the_service_settings():
    from xscan.score.run import ScoreConfig, identity
    from xscan.serve.settings import SettingsError, load_settings

    fast = identity(ScoreConfig(None, ["x"], "out", decode_margin=2.0), "sha", False)
    full = identity(ScoreConfig(None, ["x"], "out"), "sha", False)
    assert fast["decode_margin"] == 2.0 and full["decode_margin"] == 0.0  # resume must match
    assert load_settings({}, environ={}).decode_margin == 0.0
    assert load_settings({}, environ={"XSCAN_DECODE_MARGIN": "3"}).decode_margin == 3.0
    assert load_settings({"decode_margin": 2.0}, environ={}).decode_margin == 2.0
    with pytest.raises(SettingsError, match="decode-margin"):
        load_settings({"decode_margin": 0.5}, environ={})
