from __future__ import annotations

import math

import numpy as np
import pytest

from xscan.metrics.detection import coco_metrics, json_safe

CLASSES = ("knife", "gun")


def _gts():
    return [
        {
            "image_id": 1,
            "height": 100,
            "width": 100,
            "boxes": np.array([[10, 10, 50, 50], [60, 60, 90, 95]], float),
            "labels": np.array([0, 1]),
        },
        {
            "image_id": 2,
            "height": 100,
            "width": 100,
            "boxes": np.array([[20, 30, 70, 80]], float),
            "labels": np.array([0]),
        },
        {
            "image_id": 3,
            "height": 100,
            "width": 100,
            "boxes": np.zeros((0, 4)),
            "labels": np.zeros(0, int),
        },
    ]


def _perfect(shift: float = 0.0):
    return [
        {
            "image_id": g["image_id"],
            "boxes": g["boxes"] + np.array([shift, 0, shift, 0]),
            "scores": np.full(len(g["labels"]), 0.9),
            "labels": g["labels"],
        }
        for g in _gts()
    ]


def test_perfect_predictions_give_ap_one():
    m = coco_metrics(_gts(), _perfect(), CLASSES)
    assert m["mAP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert m["per_class"]["knife"]["AP"] == pytest.approx(1.0)
    assert m["per_class"]["gun"]["AP50"] == pytest.approx(1.0)
    assert m["n_gt"] == 3 and m["n_dets"] == 3


def test_shifted_boxes_lower_ap():
    # A 6 px shift keeps IoU in 0.66..0.79 for these boxes: AP50 stays 1, strict IoUs fail.
    m = coco_metrics(_gts(), _perfect(shift=6.0), CLASSES)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["mAP"] < 0.7
    far = coco_metrics(_gts(), _perfect(shift=40.0), CLASSES)
    assert far["AP50"] == pytest.approx(0.0) and far["mAP"] == pytest.approx(0.0)


def test_empty_predictions_give_zero():
    empty = [
        {
            "image_id": g["image_id"],
            "boxes": np.zeros((0, 4)),
            "scores": np.zeros(0),
            "labels": np.zeros(0, int),
        }
        for g in _gts()
    ]
    m = coco_metrics(_gts(), empty, CLASSES)
    assert m["mAP"] == 0.0 and m["AP50"] == 0.0 and m["per_class"]["gun"]["AP"] == 0.0
    assert m["AP50_any_class"] == 0.0


def test_any_class_ap_counts_a_box_that_names_the_wrong_class():
    swapped = _perfect()
    swapped[0] = {**swapped[0], "labels": np.array([1, 0])}  # knife called gun and vice versa
    m = coco_metrics(_gts(), swapped, CLASSES)
    assert m["per_class"]["gun"]["AP50"] == pytest.approx(0.0)
    assert m["AP50"] < 0.5
    assert m["AP50_any_class"] == pytest.approx(1.0)
    assert coco_metrics(_gts(), _perfect(), CLASSES)["AP50_any_class"] == pytest.approx(1.0)


def test_wrong_class_and_false_positive_ranked_first():
    preds = _perfect()
    # A confident false positive on the benign image halves precision at the first recall.
    preds[2] = {
        "image_id": 3,
        "boxes": np.array([[0, 0, 30, 30]], float),
        "scores": np.array([0.99]),
        "labels": np.array([0]),
    }
    m = coco_metrics(_gts(), preds, CLASSES)
    assert m["per_class"]["gun"]["AP50"] == pytest.approx(1.0)
    assert 0.5 < m["per_class"]["knife"]["AP50"] < 1.0


def test_class_without_ground_truth_is_nan_and_json_safe():
    gts = _gts()[1:]
    m = coco_metrics(gts, _perfect()[1:], CLASSES)
    assert math.isnan(m["per_class"]["gun"]["AP"])
    assert json_safe(m)["per_class"]["gun"]["AP"] is None


def test_faint_threats_are_ignored_in_the_threats_that_show():
    from xscan.metrics.slices import conspicuous_coco

    gts = _gts()
    # image 1's knife is faint (conspicuity 0.4): ignored; the gun and image 2's knife show
    gts[0]["conspicuity"] = [((10, 10, 50, 50), 0.4), ((60, 60, 90, 95), 3.0)]
    gts[1]["conspicuity"] = [((20, 30, 70, 80), 1.5)]
    found = _perfect()
    found[0] = {k: v[1:] for k, v in found[0].items() if k != "image_id"} | {"image_id": 1}
    plain = coco_metrics(gts, found, CLASSES)
    assert plain["per_class"]["knife"]["AP50"] == pytest.approx(0.5, abs=0.01)  # 1 of 2 found
    shown = conspicuous_coco(gts, found, CLASSES)
    assert shown["n_ignored"] == 1 and shown["min_conspicuity"] == 1.0
    assert shown["AP50"] == pytest.approx(1.0)
    assert shown["per_class"]["knife"]["AP50"] == pytest.approx(1.0)
    # a detection on the faint knife is neither a hit nor a false alarm there
    assert conspicuous_coco(gts, _perfect(), CLASSES)["AP50"] == pytest.approx(1.0)
    # a false alarm on a clear scan, ranked first, still costs precision
    wrong = _perfect()
    wrong[2] = {
        "image_id": 3,
        "boxes": np.array([[5, 5, 40, 40.0]]),
        "scores": np.array([0.95]),
        "labels": np.array([0]),
    }
    assert conspicuous_coco(gts, wrong, CLASSES)["per_class"]["knife"]["AP50"] < 0.9


def test_no_conspicuity_no_threats_that_show_metrics():
    from xscan.metrics.slices import conspicuous_coco

    assert conspicuous_coco(_gts(), _perfect(), CLASSES) is None
