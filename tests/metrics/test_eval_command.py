from __future__ import annotations

import json

import onnx
import pytest
import torch

from xscan.cli import main as cli
from xscan.models import build_inference_module, build_model
from xscan.spec import METADATA_KEY, ModelSpec
from xscan.train.checkpoint import load_checkpoint, save_checkpoint

CLASSES = ["firearm", "knife", "scissors", "wrench"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "scans"
    assert cli(["synth", "--n", "8", "--size", "96x96", "--seed", "5", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    spec = ModelSpec(
        task="detect",
        class_names=tuple(CLASSES),
        input_size=(64, 64),
        arch="centernet",
        arch_params={
            "backbone": "mobilenet_v3_small",
            "fpn_channels": 16,
            "head_channels": 16,
            "head_depth": 1,
        },
        score_threshold=0.0,
        max_detections=20,
    ).validate()
    torch.manual_seed(0)
    model = build_model(spec)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, model=model.state_dict(), optimizer={}, epoch=1, spec=spec, config={})
    return path


def test_eval_checkpoint_writes_metrics_curves_and_calibrates(synth_dir, checkpoint, tmp_path):
    out = tmp_path / "eval"
    rc = cli(["eval", str(checkpoint), str(synth_dir), "--out", str(out), "--calibrate"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["format"] == "xscan" and m["coco"]["n_images"] == 8
    assert set(m["coco"]["per_class"]) == set(CLASSES)
    assert 0.0 <= m["coco"]["AP50"] <= 1.0
    # generated scans annotate conspicuity: AP over the threats that show is reported too
    shown = m["coco_conspicuous"]
    assert shown["n_gt"] == m["coco"]["n_gt"] and 0 <= shown["n_ignored"] <= shown["n_gt"]
    assert {"far1", "far5", "far10"} == set(m["alarm"]["at_far"])
    assert m["alarm"]["n_threat"] + m["alarm"]["n_benign"] == 8
    by_class = m["sliced"]["threat_class"]
    assert set(by_class) <= set(CLASSES)
    assert max(c["n_threat"] for c in by_class.values()) <= m["alarm"]["n_threat"]
    for name, c in m["sliced"].get("only_class", {}).items():
        assert c["n_threat"] <= by_class[name]["n_threat"]
    assert (out / "pr_curve.png").stat().st_size > 1000
    if m["alarm"]["n_threat"] and m["alarm"]["n_benign"]:
        assert (out / "roc_curve.png").stat().st_size > 1000
    calibrated = checkpoint.with_name("best.calibrated.pt")
    spec = load_checkpoint(calibrated)["spec"]
    assert [p.name for p in spec.operating_points] == ["far1", "far5", "far10"]
    assert spec.default_operating_point == "far5"
    assert not load_checkpoint(checkpoint)["spec"].operating_points  # original untouched


def test_eval_onnx_matches_checkpoint(synth_dir, checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt["spec"]
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    module = build_inference_module(model, spec)
    path = tmp_path / "m.onnx"
    names = ["boxes", "scores", "classes", "num_dets"]
    torch.onnx.export(
        module,
        (torch.rand(2, 3, 64, 64),),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["images"],
        output_names=names,
        dynamic_axes={n: {0: "batch"} for n in ["images", *names]},
    )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    onnx.save(proto, str(path))
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(["eval", str(checkpoint), str(synth_dir), "--out", str(a)]) == 0
    assert cli(["eval", str(path), str(synth_dir), "--out", str(b)]) == 0
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert mb["coco"]["n_gt"] == ma["coco"]["n_gt"]
    assert mb["coco"]["AP50"] == pytest.approx(ma["coco"]["AP50"], abs=0.02)
    assert mb["alarm"]["auroc"] == pytest.approx(ma["alarm"]["auroc"], abs=0.02)


def test_eval_errors_name_the_problem(checkpoint, tmp_path):
    assert cli(["eval", str(tmp_path / "missing.pt"), str(tmp_path)]) == 2


def test_slices_take_classes_from_boxes_and_image_labels():
    from xscan.data.records import ObjectRecord, ScanRecord
    from xscan.metrics.slices import scan_slices
    from xscan.train.engine import metrics_from_predictions

    def obj(label):
        return ObjectRecord(box=(0, 0, 4, 4), label=label, original_label=label)

    recs = [
        ScanRecord(image="a", width=8, height=8, source="t", objects=[obj("knife"), obj("phone")]),
        ScanRecord(image="b", width=8, height=8, source="t", objects=[obj("wrench"), obj("knife")]),
        ScanRecord(
            image="c", width=8, height=8, source="t", image_labels={"firearm": 1, "knife": -1}
        ),
        ScanRecord(image="d", width=8, height=8, source="t"),
    ]
    s = scan_slices(recs, CLASSES)
    assert [x["threat_class"] for x in s] == [("knife",), ("knife", "wrench"), ("firearm",), ()]
    # "only_class" is derived from "threat_class" where the slices are built
    gts = [
        {**x, "image_score": score, "is_threat": bool(x["threat_class"]), "has_boxes": False}
        for x, score in zip(s, [0.9, 0.9, 0.1, 0.5], strict=True)
    ]
    sliced = metrics_from_predictions(gts, [{}] * 4, CLASSES, (0.05,))["sliced"]
    assert set(sliced["only_class"]) == {"knife", "firearm"}
    assert sliced["only_class"]["knife"] == {"n_threat": 1, "at_far": {"far5": 1.0}}
    assert sliced["only_class"]["firearm"] == {"n_threat": 1, "at_far": {"far5": 0.0}}
    assert sliced["threat_class"]["knife"]["n_threat"] == 2


def test_slices_by_the_most_conspicuous_threat():
    from xscan.data.records import ObjectRecord, ScanRecord
    from xscan.metrics.slices import scan_slices
    from xscan.train.engine import metrics_from_predictions

    def obj(label, c):
        return ObjectRecord(
            box=(0, 0, 4, 4), label=label, original_label=label, attrs={"conspicuity": c}
        )

    recs = [
        ScanRecord(image="a", width=8, height=8, source="t", objects=[obj("knife", 0.5)]),
        ScanRecord(
            image="b", width=8, height=8, source="t", objects=[obj("knife", 0.3), obj("wrench", 4)]
        ),
        ScanRecord(image="c", width=8, height=8, source="t", objects=[obj("phone", 9.0)]),
        ScanRecord(image="d", width=8, height=8, source="t"),
    ]
    s = scan_slices(recs, CLASSES)
    assert [x["visibility"] for x in s] == ["faint", "shows", None, None]
    assert s[1]["conspicuity"] == [((0, 0, 4, 4), 0.3), ((0, 0, 4, 4), 4.0)]
    gts = [
        {**x, "image_score": score, "is_threat": bool(x["threat_class"]), "has_boxes": False}
        for x, score in zip(s, [0.05, 0.9, 0.5, 0.1], strict=True)
    ]
    vis = metrics_from_predictions(gts, [{}] * 4, CLASSES, (0.5,))["sliced"]["visibility"]
    assert vis["shows"] == {"n_threat": 1, "at_far": {"far50": 1.0}}
    assert vis["faint"] == {"n_threat": 1, "at_far": {"far50": 0.0}}


def test_scan_views_in_checkpoint_eval_match_the_runtime_and_are_calibrated(
    synth_dir, checkpoint, tmp_path
):
    from torch.utils.data import DataLoader

    from xscan.data import load_dataset
    from xscan.data.torch_dataset import DetectionDataset, collate_detections
    from xscan.train.engine import predict

    ckpt = load_checkpoint(checkpoint)
    spec = ckpt["spec"]
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    ds = DetectionDataset(load_dataset("xscan", synth_dir), spec)
    batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_detections))
    # the mean over 8 views of each view's top score, views as xscan.preprocess.scan_view
    views = [
        lambda x: x,
        lambda x: x.flip(-1),
        lambda x: x.flip(-2),
        lambda x: x.flip(-1).flip(-2),
    ]
    views += [lambda x, v=v: torch.rot90(v(x), 1, dims=(-2, -1)) for v in views]
    per_view = [
        [g["image_score"] for g in predict(model, [(v(x), t) for x, t in batches], spec, "cpu")[0]]
        for v in views
    ]
    gts, preds = predict(model, batches, spec.replace(scan_views=8), torch.device("cpu"))
    expected = torch.tensor(per_view).mean(0)
    got = torch.tensor([g["image_score"] for g in gts])
    assert torch.allclose(got, expected, atol=1e-5)
    assert len(set(torch.tensor(per_view)[:, 0].tolist())) > 1  # the views really differ
    # as in the runtime, a view without a detection at the score threshold counts 0
    # (halfway between two scores: the views run in one batch there, alone here, and may
    # differ in the last bits)
    ranked = torch.tensor(per_view).flatten().unique()
    thr = float(ranked[len(ranked) // 2 - 1 : len(ranked) // 2 + 1].mean())
    gts_t, _ = predict(model, batches, spec.replace(scan_views=8, score_threshold=thr), "cpu")
    pv = torch.tensor(per_view)
    expected_t = torch.where(pv >= thr, pv, torch.zeros_like(pv)).mean(0)
    got_t = torch.tensor([g["image_score"] for g in gts_t])
    assert torch.allclose(got_t, expected_t, atol=1e-5) and not torch.allclose(got_t, got)
    # detections come from the mean of the views' heatmaps, each turned back onto the scan
    undo = [
        lambda m: m,
        lambda m: m.flip(-1),
        lambda m: m.flip(-2),
        lambda m: m.flip(-1).flip(-2),
    ]
    undo += [lambda m, u=u: u(torch.rot90(m, -1, dims=(-2, -1))) for u in undo]
    with torch.no_grad():
        x = batches[0][0]
        heats = [u(torch.sigmoid(model(v(x))["heatmap"])) for v, u in zip(views, undo, strict=True)]
    top_merged = torch.stack(heats).mean(0).flatten(1).amax(1)
    got_top = torch.tensor([float(p["scores"].max()) for p in preds[: len(x)]])
    assert torch.allclose(got_top, top_merged, atol=1e-5)
    plain = predict(model, batches, spec, torch.device("cpu"))[1]
    assert not all(
        torch.equal(torch.as_tensor(a["scores"]), torch.as_tensor(b["scores"]))
        for a, b in zip(preds, plain, strict=True)
    )
    out = tmp_path / "eval"
    argv = ["eval", str(checkpoint), str(synth_dir), "--out", str(out)]
    assert cli([*argv, "--scan-views", "8", "--calibrate"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["scan_views"] == 8
    calibrated = load_checkpoint(checkpoint.with_name("best.calibrated.pt"))["spec"]
    assert calibrated.scan_views == 8
    threshold = calibrated.operating_points[1].threshold
    assert threshold == pytest.approx(m["alarm"]["at_far"]["far5"]["threshold"])
