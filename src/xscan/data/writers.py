"""Writing a collection as COCO JSON or as a YOLO txt dataset.

Category ids (COCO, 1-based) and class indices (YOLO, 0-based) follow
``collection.class_names``. Image files are copied (``images="copy"``), hard-linked where the
file system allows (``"link"``, copying otherwise) or referenced in place (``"keep"``, COCO
only: ``file_name`` is then an absolute path).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from xscan.data.records import DatasetCollection, ScanRecord

IMAGE_MODES = ("copy", "link", "keep")


def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _unique_names(records: list[ScanRecord]) -> list[str]:
    """A file name per record, unique across the collection (sources may reuse names)."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        p = Path(r.image or r.raw_low or "scan.png")
        name = p.name
        if name in seen:
            seen[name] += 1
            name = f"{p.stem}_{seen[p.name]}{p.suffix}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def write_coco(collection: DatasetCollection, out_dir: str | Path, images: str = "copy") -> Path:
    """Write ``out_dir/annotations.json`` (+ ``out_dir/images/``); returns the JSON path."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images: expected one of {IMAGE_MODES}, got {images!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cat_id = {c: i + 1 for i, c in enumerate(collection.class_names)}
    doc: dict[str, Any] = {
        "info": {
            "description": f"written by xscan from {collection.source}",
            "taxonomy": collection.taxonomy,
        },
        "categories": [{"id": i, "name": c, "supercategory": "item"} for c, i in cat_id.items()],
        "images": [],
        "annotations": [],
    }
    ann_id = 1
    for img_id, (r, name) in enumerate(
        zip(collection.records, _unique_names(collection.records), strict=True), 1
    ):
        if images == "keep":
            file_name = str(Path(r.image).resolve())
        else:
            _place(Path(r.image), out / "images" / name, images)
            file_name = name
        entry = {
            "id": img_id,
            "file_name": file_name,
            "width": r.width,
            "height": r.height,
            "source": r.source,
            "split": r.split,
            "subsets": r.subsets,
            "image_labels": r.image_labels,
        }
        if r.is_threat is not None:
            entry["has_threat"] = bool(r.is_threat)
        for key in ("raw_low", "raw_high"):
            src = getattr(r, key)
            if src:
                rel = Path("raw") / f"{Path(name).stem}_{key[4:]}{Path(src).suffix}"
                _place(Path(src), out / rel, "copy" if images == "keep" else images)
                entry[key] = str(rel)
        doc["images"].append(entry)
        for o in r.objects:
            if o.label not in cat_id:
                continue
            x1, y1, x2, y2 = o.box
            a = {
                "id": ann_id,
                "image_id": img_id,
                "category_id": cat_id[o.label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "segmentation": o.mask or [],
                "original_label": o.original_label,
            }
            for key in ("occlusion", "occlusion_level", "difficult"):
                if getattr(o, key) is not None:
                    a[key] = getattr(o, key)
            doc["annotations"].append(a)
            ann_id += 1
    path = out / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def write_yolo(collection: DatasetCollection, out_dir: str | Path, images: str = "copy") -> Path:
    """Write ``out_dir/{images,labels}/<split>/`` + ``data.yaml`` + ``classes.txt``.

    Scans without a split go to ``train``. Returns the ``data.yaml`` path.
    """
    if images not in ("copy", "link"):
        raise ValueError(f"images: YOLO output needs 'copy' or 'link', got {images!r}")
    out = Path(out_dir)
    index = {c: i for i, c in enumerate(collection.class_names)}
    splits: set[str] = set()
    for r, name in zip(collection.records, _unique_names(collection.records), strict=True):
        split = r.split or "train"
        splits.add(split)
        _place(Path(r.image), out / "images" / split / name, images)
        lines = []
        for o in r.objects:
            if o.label not in index:
                continue
            x1, y1, x2, y2 = o.box
            cx, cy = (x1 + x2) / 2 / r.width, (y1 + y2) / 2 / r.height
            w, h = (x2 - x1) / r.width, (y2 - y1) / r.height
            lines.append(f"{index[o.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        lbl = out / "labels" / split / f"{Path(name).stem}.txt"
        lbl.parent.mkdir(parents=True, exist_ok=True)
        lbl.write_text("\n".join(lines) + ("\n" if lines else ""))
    data = {"path": ".", "names": list(collection.class_names)}
    data.update({s: f"images/{s}" for s in sorted(splits)})
    path = out / "data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in collection.class_names))
    return path
