"""Files derived from ``results.jsonl`` in one streaming pass each: summary CSV and COCO JSON.

They are rebuilt from the JSONL at the end of every session, so a resumed run's derived
files are as exactly-once as the JSONL itself.

COCO conventions (``coco_results.json``, a list usable with pycocotools ``COCO.loadRes``):

* ``image_id``: ``index + 1`` (1-based discovery index) unless a ground-truth COCO file is
  given, in which case the id of the ground-truth image whose ``file_name`` the result path
  ends with. ``coco_images.json`` lists the images (``id``, ``file_name`` = result path,
  ``width``, ``height``) and categories, so ``COCO("coco_images.json")`` can load the results
  without any ground truth.
* ``category_id``: ``class_id + 1`` (the 1-based order of ``spec.class_names``, as ``xscan
  synth`` numbers its categories) or, with ground truth, the id of the category of that name.
* ``bbox``: ``[x, y, w, h]`` in original image pixels.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from xscan.score.store import iter_results

log = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "index",
    "path",
    "status",
    "image_score",
    "alarm",
    "threshold",
    "num_detections",
    "top_class",
    "top_score",
    "width",
    "height",
    "size",
    "sha256",
    "error_reason",
    "error_message",
)


def summary_row(rec: dict[str, Any]) -> dict[str, Any]:
    dets = rec.get("detections") or []
    top = max(dets, key=lambda d: d["score"]) if dets else None
    err = rec.get("error") or {}
    return {
        "index": rec["index"],
        "path": rec["path"],
        "status": rec["status"],
        "image_score": rec.get("image_score", ""),
        "alarm": int(rec["alarm"]) if "alarm" in rec else "",
        "threshold": rec.get("threshold", ""),
        "num_detections": len(dets) if rec["status"] == "ok" else "",
        "top_class": top["class"] if top else "",
        "top_score": top["score"] if top else "",
        "width": rec.get("width", ""),
        "height": rec.get("height", ""),
        "size": rec.get("size", ""),
        "sha256": rec.get("sha256") or "",
        "error_reason": err.get("reason", ""),
        "error_message": err.get("message", ""),
    }


def write_summary_csv(run_dir: str | Path) -> Path:
    """``RUN_DIR/summary.csv``: one row per input (see :data:`SUMMARY_FIELDS`)."""
    out = Path(run_dir) / "summary.csv"
    tmp = out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for rec in iter_results(run_dir):
            w.writerow(summary_row(rec))
    os.replace(tmp, out)
    return out


def _gt_maps(gt_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    gt = json.loads(gt_path.read_text(encoding="utf-8"))
    try:
        images = {str(im["file_name"]).replace("\\", "/"): int(im["id"]) for im in gt["images"]}
        cats = {str(c["name"]): int(c["id"]) for c in gt["categories"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{gt_path}: not a COCO file with images[] and categories[] ({e})") from e
    return images, cats


def _match_gt(path: str, gt_images: dict[str, int]) -> int | None:
    """Ground-truth id of the image whose file_name ``path`` ends with (longest match)."""
    parts = path.replace("\\", "/").split("/")
    for i in range(len(parts)):
        hit = gt_images.get("/".join(parts[i:]))
        if hit is not None:
            return hit
    return None


def write_coco(
    run_dir: str | Path, class_names: list[str], gt: str | Path | None = None
) -> tuple[Path, Path]:
    """Write ``coco_results.json`` and ``coco_images.json`` (see the module docstring)."""
    run_dir = Path(run_dir)
    gt_images, gt_cats = _gt_maps(Path(gt)) if gt else ({}, {})
    cat_ids = {i: (gt_cats.get(n) if gt else i + 1) for i, n in enumerate(class_names)}
    res_path, img_path = run_dir / "coco_results.json", run_dir / "coco_images.json"
    unmatched = 0
    with (
        open(res_path.with_suffix(".tmp"), "w", encoding="utf-8") as fr,
        open(img_path.with_suffix(".tmp"), "w", encoding="utf-8") as fi,
    ):
        fr.write("[")
        fi.write('{"images": [')
        first_r = first_i = True
        for rec in iter_results(run_dir):
            if rec["status"] != "ok":
                continue
            image_id = _match_gt(rec["path"], gt_images) if gt else rec["index"] + 1
            if image_id is None:
                unmatched += 1
                continue
            im = {"id": image_id, "file_name": rec["path"]}
            im.update(width=rec["width"], height=rec["height"])
            fi.write(("" if first_i else ",") + "\n" + json.dumps(im))
            first_i = False
            for d in rec["detections"]:
                cid = cat_ids.get(d["class_id"])
                if cid is None:
                    continue
                x1, y1, x2, y2 = d["box"]
                r = {"image_id": image_id, "category_id": cid, "score": d["score"]}
                r["bbox"] = [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]
                fr.write(("" if first_r else ",") + "\n" + json.dumps(r))
                first_r = False
        fr.write("\n]\n")
        cats = [{"id": cid, "name": n} for i, n in enumerate(class_names) if (cid := cat_ids[i])]
        fi.write('\n], "annotations": [], "categories": ' + json.dumps(cats) + "}\n")
    os.replace(res_path.with_suffix(".tmp"), res_path)
    os.replace(img_path.with_suffix(".tmp"), img_path)
    if unmatched:
        log.warning(
            "%d scored image(s) have no match in %s; left out of COCO results", unmatched, gt
        )
    return res_path, img_path
