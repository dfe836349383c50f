"""COCO records for synthetic scans: RLE masks (pycocotools), categories, the JSON file.

Category ids are 1-based positions in the kind's fixed class list (``BAGGAGE_CATEGORIES`` or
``CARGO_CATEGORIES``), so ids are stable across datasets of the same kind. Boxes are COCO
``[x, y, w, h]`` in pixels, the tight bounds of the mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from xscan.synth.scene import SceneObject

# Canonical class names (the data taxonomy uses the same names).
BAGGAGE_CATEGORIES = (
    "firearm",
    "firearm_part",
    "knife",
    "scissors",
    "pliers",
    "wrench",
    "hammer",
    "baton",
    "lighter",
    "power_bank",
    "battery",
    "liquid_container",
    "laptop",
    "phone",
    "explosive_like",
    "drugs_like",
)
CARGO_CATEGORIES = ("concealed_compartment", "drugs_like", "firearm", "undeclared_metal")


def categories_for(kind: str) -> tuple[str, ...]:
    """The class list of ``kind`` (``baggage`` or ``cargo``)."""
    if kind == "baggage":
        return BAGGAGE_CATEGORIES
    if kind == "cargo":
        return CARGO_CATEGORIES
    raise ValueError(f"kind: expected 'baggage' or 'cargo', got {kind!r}")


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a ``(H, W) bool`` mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def decode_rle(rle: dict) -> np.ndarray:
    """``(H, W) bool`` mask from a COCO RLE dict (``counts`` as str or bytes)."""
    r = dict(rle)
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode("ascii")
    return mask_utils.decode(r).astype(bool)


def annotation_records(objects: list[SceneObject], kind: str) -> list[dict]:
    """COCO annotation dicts (without ``id``/``image_id``) for one scan's objects."""
    cats = categories_for(kind)
    out = []
    for o in objects:
        x0, y0, x1, y1 = o.box
        out.append(
            {
                "category_id": cats.index(o.category) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "segmentation": encode_rle(o.mask),
                "area": int(o.mask.sum()),
                "iscrowd": 0,
                "material": o.material,
                "occlusion": float(o.occlusion),
                "occlusion_level": int(o.occlusion_level),
                "conspicuity": float(o.conspicuity),
                "is_threat": bool(o.is_threat),
            }
        )
    return out


def write_coco(
    path: Path, kind: str, images: list[dict], per_image_anns: list[list[dict]], info: dict
) -> dict:
    """Assemble and write the COCO JSON; ids are 1-based in image order. Returns the dict."""
    anns = []
    for img, recs in zip(images, per_image_anns, strict=True):
        for r in recs:
            anns.append({"id": len(anns) + 1, "image_id": img["id"], **r})
    coco = {
        "info": info,
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": kind}
            for i, n in enumerate(categories_for(kind))
        ],
    }
    Path(path).write_text(json.dumps(coco, indent=1) + "\n")
    return coco
