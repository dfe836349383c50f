from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from xscan.runtime import AnomalyScorer, Detector, ModelFileError, ProviderError, load_model
from xscan.spec import METADATA_KEY


def _img(h=48, w=80, value=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(value, 5, (h, w, 3)), 0, 255).astype(np.uint8)


def test_load_model_picks_class_and_reads_spec(toy_detector_onnx, toy_anomaly_onnx):
    det = load_model(toy_detector_onnx, threads=1)
    assert isinstance(det, Detector)
    assert det.spec.class_names == ("knife", "firearm")
    assert det.providers == ["CPUExecutionProvider"]
    assert len(det.model_sha256) == 64
    assert isinstance(load_model(toy_anomaly_onnx, threads=1), AnomalyScorer)


def test_detector_predict_maps_boxes_and_thresholds(toy_detector_onnx):
    det = load_model(toy_detector_onnx, threads=1, tiling="never")
    img = _img(48, 80, value=60)  # letterboxed 64x64: scale 0.8, pad_y 12.8
    p = det.predict(img)
    darkness = 1.0 - det.prepare(img)[0].mean()
    assert p.labels == ["knife", "firearm"]
    # The toy's class-0 box is the top-left quarter of the input: (0, 0, 32, 32) in input px.
    info = det.prepare(img)[1]
    np.testing.assert_allclose(p.boxes[0], info.boxes_to_original(np.array([[0, 0, 32, 32]]))[0])
    assert p.image_score == pytest.approx(p.scores.max())
    assert p.threshold == det.spec.alarm_threshold == 0.5
    assert p.alarm == (p.image_score >= 0.5)
    assert p.scores[0] > p.scores[1]
    assert 0 < p.image_score < 1 and darkness > 0
    assert det.predict(img, threshold=0.99).alarm is False
    assert det.predict(img, threshold=0.01).alarm is True
    d = json.loads(json.dumps(p.to_dict()))
    assert d["detections"][0]["label"] == "knife" and d["alarm"] == p.alarm


def test_score_threshold_filters_detections(toy_detector_onnx):
    det = load_model(toy_detector_onnx, threads=1, tiling="never")
    bright = np.full((64, 64, 3), 250, np.uint8)  # darkness ~0.02 < score_threshold 0.05
    p = det.predict(bright)
    assert p.num_detections == 0 and p.image_score == 0.0 and not p.alarm


def test_batch_1_and_5_agree(toy_detector_onnx):
    det = load_model(toy_detector_onnx, threads=1, tiling="never")
    imgs = [_img(40 + 7 * i, 64 + 5 * i, value=40 + 30 * i, seed=i) for i in range(5)]
    single = [det.predict(im) for im in imgs]
    batched = det.predict_batch(imgs)
    for a, b in zip(single, batched, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        assert a.labels == b.labels and a.alarm == b.alarm


def test_infer_prepared_matches_predict(toy_detector_onnx):
    det = load_model(toy_detector_onnx, threads=1, tiling="never")
    imgs = [_img(seed=1), _img(30, 60, value=120, seed=2)]
    prepared = [det.prepare(im) for im in imgs]
    batch = np.stack([x for x, _ in prepared])
    out = det.infer_prepared(batch, [i for _, i in prepared], threshold=0.3)
    ref = det.predict_batch(imgs, threshold=0.3)
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes)
        assert a.threshold == 0.3 and a.alarm == b.alarm


def test_gray_and_uint16_inputs(toy_detector_onnx):
    det = load_model(toy_detector_onnx, threads=1, tiling="never")
    g8 = np.full((50, 50), 128, np.uint8)
    g16 = np.full((50, 50), 128 * 257, np.uint16)
    a, b = det.predict(g8), det.predict(g16)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_anomaly_scorer(toy_anomaly_onnx):
    m = load_model(toy_anomaly_onnx, threads=1, tiling="never")
    img = _img(48, 80, value=50)
    p = m.predict(img)
    assert p.anomaly_map.shape == (48, 80) and p.anomaly_map.dtype == np.float32
    assert p.boxes.shape == (0, 4) and p.num_detections == 0
    # toy: score = max of the darkness map; normalisation mean 0 / std 1 is the identity
    assert p.image_score == pytest.approx(float(p.anomaly_map.max()), abs=0.02)
    assert p.alarm == (p.image_score >= m.spec.alarm_threshold)


def test_missing_provider_raises(toy_detector_onnx):
    with pytest.raises(ProviderError, match="available"):
        load_model(toy_detector_onnx, providers=["tensorrt"])
    with pytest.raises(ProviderError, match="NoSuchExecutionProvider"):
        load_model(toy_detector_onnx, providers="NoSuchExecutionProvider")


def test_model_without_metadata(toy_detector_onnx, tmp_path):
    model = onnx.load(str(toy_detector_onnx))
    del model.metadata_props[:]
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"plain\.onnx.*not an xscan model"):
        load_model(path)


def test_truncated_model(toy_detector_onnx, tmp_path):
    data = toy_detector_onnx.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"cut\.onnx.*truncated or corrupt"):
        load_model(path)


def test_newer_schema_version(toy_detector_onnx, tmp_path):
    model = onnx.load(str(toy_detector_onnx))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            d = json.loads(prop.value)
            d["schema_version"] = 99
            prop.value = json.dumps(d)
    path = tmp_path / "future.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"future\.onnx.*schema_version 99.*upgrade"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        load_model(tmp_path / "nope.onnx")


def test_providers_by_short_or_full_name(toy_detector_onnx):
    for p in ("cpu", "CPUExecutionProvider", ["cpu"]):
        assert load_model(toy_detector_onnx, providers=p, threads=1).providers == [
            "CPUExecutionProvider"
        ]


def test_default_model_path(toy_detector_onnx, tmp_path, monkeypatch):
    import xscan.runtime.loader as loader
    from xscan.runtime import default_model_path

    monkeypatch.setenv("XSCAN_MODELS_DIR", str(tmp_path))
    assert loader.models_dirs()[0] == tmp_path
    assert loader.models_dirs()[-1].name == "models"  # the repository's folder comes next
    (tmp_path / "xscan-detector-baggage.onnx").write_bytes(toy_detector_onnx.read_bytes())
    assert default_model_path("detect") == tmp_path / "xscan-detector-baggage.onnx"
    monkeypatch.setattr(loader, "models_dirs", lambda: [tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match=r"empty/xscan-detector-baggage\.onnx"):
        default_model_path()
    with pytest.raises(ValueError, match="no default model"):
        default_model_path("segment")


@pytest.mark.parametrize("modality", ["raw_dual", "gray"])
def test_other_modalities(modality, tmp_path):
    from toy_models import make_toy_detector, toy_detector_spec

    c = 3 if modality == "raw_dual" else 1
    spec = toy_detector_spec().replace(modality=modality, mean=(0.5,) * c, std=(0.25,) * c)
    det = load_model(make_toy_detector(tmp_path / f"{modality}.onnx", spec), tiling="never")
    assert det.spec.modality == modality
    rng = np.random.default_rng(0)
    if modality == "raw_dual":
        low = rng.uniform(0.2, 0.9, (40, 60)).astype(np.float32)
        image = np.stack([low, np.clip(low + 0.1, 0, 1)], axis=-1)  # (H, W, 2) low/high pair
        x, _ = det.prepare(image)
        assert x.shape == (3, 64, 64)  # low, high and the effective-Z channel
        with pytest.raises(ValueError, match="read_raw_pair"):
            det.predict(np.zeros((40, 60, 3), np.uint8))
    else:
        image = rng.integers(0, 65535, (40, 60), dtype=np.uint16)
    p = det.predict(image)
    assert p.num_detections == 2 and p.boxes.max() <= 60


def test_session_threads_sleep_between_calls_unless_asked_to_spin(monkeypatch):
    from xscan.runtime.session import session_options

    keys = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    monkeypatch.delenv("XSCAN_ORT_SPIN", raising=False)
    so = session_options(threads=2)
    assert [so.get_session_config_entry(k) for k in keys] == ["0", "0"]
    assert so.intra_op_num_threads == 2
    monkeypatch.setenv("XSCAN_ORT_SPIN", "1")
    assert [session_options(2).get_session_config_entry(k) for k in keys] == ["1", "1"]


@pytest.mark.parametrize("views", [2, 4, 8])
def test_scan_views_average_the_scan_score_over_mirrored_and_turned_scans(views, tmp_path):
    from dark_box import dark_box_spec, make_dark_box_detector

    from xscan.spec import SpecError

    spec = dark_box_spec()
    path = make_dark_box_detector(tmp_path / "ramp.onnx", spec, ramp=True)
    one = Detector(path)
    many = Detector(path)
    many.spec = spec.replace(scan_views=views)
    img = np.full((64, 64, 3), 255, np.uint8)
    img[10:20, 5:30] = 0  # off-centre, so that every view scores it differently
    flips = [img, img[:, ::-1], img[::-1], img[::-1, ::-1]]
    turned = [np.rot90(v) for v in flips]
    expected = [one.predict(np.ascontiguousarray(v)).image_score for v in flips + turned]
    assert len(set(np.round(expected, 6))) >= 6  # the views really differ
    p = many.predict(img, threshold=0.5)
    np.testing.assert_allclose(p.extra["view_scores"], expected[:views], atol=1e-6)
    assert p.image_score == pytest.approx(float(np.mean(expected[:views])), abs=1e-6)
    assert p.alarm == (p.image_score >= 0.5)
    # detections come from the scan as it is
    plain = one.predict(img)
    np.testing.assert_array_equal(p.boxes, plain.boxes)
    np.testing.assert_array_equal(p.scores, plain.scores)
    assert p.boxes[0].tolist() == [5.0, 10.0, 30.0, 20.0]
    # batches agree with single scans
    batch = many.predict_batch([img, img[::-1].copy()])
    assert batch[0].image_score == pytest.approx(p.image_score, abs=1e-6)
    if views == 8:
        with pytest.raises(SpecError, match="square"):
            dark_box_spec(input_size=(64, 96)).replace(scan_views=8)
    with pytest.raises(SpecError, match="scan_views"):
        spec.replace(scan_views=3)
