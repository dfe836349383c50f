"""COCO detection metrics through pycocotools (no re-implementation of COCO evaluation).

Inputs are plain numpy per image, in one pixel frame (the original image's for reports):

* ground truth: ``{"image_id", "boxes" (N, 4) float xyxy, "labels" (N,) int 0-based,
  "height", "width"}`` (``iscrowd`` optional, (N,) 0/1);
* predictions: ``{"image_id", "boxes" (M, 4) float xyxy, "scores" (M,), "labels" (M,)}``.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _coco_gt(gts: list[dict[str, Any]], class_names: list[str]) -> COCO:
    images, anns = [], []
    for g in gts:
        iid = int(g["image_id"])
        images.append({"id": iid, "height": int(g["height"]), "width": int(g["width"])})
        crowd = np.asarray(g.get("iscrowd", np.zeros(len(g["labels"]))), int).reshape(-1)
        for box, label, c in zip(
            _xywh(g["boxes"]), np.asarray(g["labels"]).reshape(-1), crowd, strict=True
        ):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": int(label) + 1,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(c),
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _detections(preds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    dets = []
    for p in preds:
        boxes = _xywh(p["boxes"])
        for box, score, label in zip(
            boxes,
            np.asarray(p["scores"]).reshape(-1),
            np.asarray(p["labels"]).reshape(-1),
            strict=True,
        ):
            dets.append(
                {
                    "image_id": int(p["image_id"]),
                    "category_id": int(label) + 1,
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return dets


def _mean_valid(x: np.ndarray) -> float:
    x = x[x > -1]
    return float(x.mean()) if x.size else float("nan")


def coco_metrics(
    gts: list[dict[str, Any]],
    preds: list[dict[str, Any]],
    class_names: list[str] | tuple[str, ...],
) -> dict[str, Any]:
    """COCO bbox metrics.

    Returns ``{"mAP", "AP50", "AP75", "AR100", "AP50_any_class", "per_class": {name: {"AP",
    "AP50", "n_gt"}}, "n_images", "n_gt", "n_dets", "pr50": {name: (recall (101,), precision
    (101,))}}``. ``AP50_any_class`` is AP50 with every threat one class (COCO's
    ``useCats=0``): a box on a threat counts whatever class it names, which is what an alarm
    needs, and the gap to ``AP50`` is what class confusion costs.
    APs are ``nan`` for classes without ground truth (and overall when there is none);
    0.0 when there are objects but no detections.
    """
    class_names = list(class_names)
    coco_gt = _coco_gt(gts, class_names)
    dets = _detections(preds)
    n_gt = {n: 0 for n in class_names}
    for a in coco_gt.dataset["annotations"]:
        n_gt[class_names[a["category_id"] - 1]] += 1
    result: dict[str, Any] = {
        "n_images": len(gts),
        "n_gt": sum(n_gt.values()),
        "n_dets": len(dets),
    }
    if not dets or not coco_gt.dataset["annotations"]:
        zero = 0.0 if coco_gt.dataset["annotations"] else float("nan")
        result.update(mAP=zero, AP50=zero, AP75=zero, AR100=zero, AP50_any_class=zero, pr50={})
        result["per_class"] = {
            n: {
                "AP": zero if n_gt[n] else float("nan"),
                "AP50": zero if n_gt[n] else float("nan"),
                "n_gt": n_gt[n],
            }
            for n in class_names
        }
        return result
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats
    with contextlib.redirect_stdout(io.StringIO()):
        any_class = COCOeval(coco_gt, coco_dt, "bbox")
        any_class.params.useCats = 0
        any_class.params.iouThrs = np.array([0.5])
        any_class.evaluate()
        any_class.accumulate()
    result.update(
        mAP=float(stats[0]),
        AP50=float(stats[1]),
        AP75=float(stats[2]),
        AR100=float(stats[8]),
        AP50_any_class=_mean_valid(any_class.eval["precision"][0, :, 0, 0, -1]),
    )
    prec = ev.eval["precision"]  # (T, R, K, A, M): iou thr, recall, class, area, max dets
    recall_pts = np.asarray(ev.params.recThrs)
    per_class, pr50 = {}, {}
    for k, name in enumerate(class_names):
        p_all = prec[:, :, k, 0, -1]
        p50 = prec[0, :, k, 0, -1]
        per_class[name] = {"AP": _mean_valid(p_all), "AP50": _mean_valid(p50), "n_gt": n_gt[name]}
        if n_gt[name]:
            pr50[name] = (recall_pts, np.where(p50 > -1, p50, 0.0))
    result["per_class"] = per_class
    result["pr50"] = pr50
    for key in ("mAP", "AP50", "AP75", "AR100", "AP50_any_class"):
        if result[key] < 0:
            result[key] = float("nan")
    return result


def json_safe(x: Any) -> Any:
    """Replace NaN with None and numpy scalars/arrays with Python values, recursively."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
