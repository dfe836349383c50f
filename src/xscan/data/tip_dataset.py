"""Offline threat image projection: write TIP scans as a dataset folder.

Online TIP (a ``tip`` source in a training config) renders in the DataLoader workers, which
on a small CPU take cycles from training itself. :func:`write_tip_dataset` renders the same
scans once, ahead of training, into the layout ``xscan synth`` writes (``DIR/images/*.png``,
``DIR/annotations.json`` in COCO with RLE masks, ``DIR/manifest.json``), so that a config
reads them as an offline ``xscan`` source.

Each scan ``i`` comes from :meth:`xscan.data.tip.TipGenerator.sample` with a seed drawn from
``(seed, i)``, and the threat library from ``seed``: the same arguments give the same files
whatever the number of workers. Scans are shrunk to fit ``size_hw`` (aspect kept, no padding:
the training letterbox pads them). Numpy and OpenCV only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xscan.data.records import ScanRecord
from xscan.data.tip import ThreatLibrary, TipGenerator, check_params, threat_classes
from xscan.synth.coco import BAGGAGE_CATEGORIES, encode_rle
from xscan.synth.generator import run_jobs

_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_STATE: dict[str, Any] = {}


def _sample_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0] & 0x7FFFFFFF)


def _init(backgrounds, categories, per_category, seed, params, scanner) -> None:
    library = ThreatLibrary.from_synth(categories, per_category, seed, scanner)
    threats = threat_classes(categories)
    _STATE["gen"] = TipGenerator(backgrounds, library, params, threat_labels=threats)


def _fit(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    s = min(size_hw[0] / h, size_hw[1] / w, 1.0)
    if s >= 1.0:
        return image, 1.0
    out = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), cv2.INTER_AREA)
    return out, s


def _make_one(job: tuple[str, int, int, tuple[int, int]]) -> tuple[dict, list[dict]]:
    out, i, sample_seed, size_hw = job
    s = _STATE["gen"].sample(sample_seed)
    img = np.clip(s.image, 0.0, 1.0)
    img, scale = _fit(img, size_hw)
    h, w = img.shape[:2]
    u8 = np.round(img * 255.0).astype(np.uint8)
    if u8.ndim == 3 and u8.shape[2] == 3:
        u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    elif u8.ndim == 3:
        u8 = u8[:, :, 0]
    name = f"{i:06d}.png"
    ok, buf = cv2.imencode(".png", u8, _PNG)
    if not ok:
        raise ValueError(f"{out}/images/{name}: PNG encoding failed")
    (Path(out) / "images" / name).write_bytes(buf.tobytes())
    anns = []
    for box, label, mask in zip(s.boxes, s.labels, s.masks, strict=True):
        b = np.asarray(box, np.float64) * scale
        if mask is not None:
            m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        else:
            m = np.zeros((h, w), bool)
            m[int(b[1]) : int(np.ceil(b[3])), int(b[0]) : int(np.ceil(b[2]))] = True
        if not m.any():
            continue  # shrunk below a pixel
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), xs.max() + 1.0, ys.max() + 1.0
        anns.append(
            {
                "label": label,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "segmentation": encode_rle(m),
                "area": int(m.sum()),
                "iscrowd": 0,
            }
        )
    image = {
        "id": i + 1,
        "file_name": name,
        "width": w,
        "height": h,
        "has_threat": bool(s.is_threat),
        "background": Path(s.path.split("#", 1)[0].removeprefix("tip:")).name,
    }
    return image, anns


def write_tip_dataset(
    out: str | os.PathLike,
    backgrounds: Sequence[ScanRecord],
    n: int,
    size_hw: tuple[int, int],
    seed: int = 0,
    workers: int = 1,
    categories: Sequence[str] | None = None,
    per_category: int = 24,
    params: dict[str, Any] | None = None,
    scanner: str = "baggage",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``n`` TIP scans to ``out``; returns the manifest (see the module docstring).

    ``categories``: classes rendered into the library (default: every baggage threat class
    the generator can render); ``params``: placement keys of :data:`xscan.data.tip.TIP_DEFAULTS`.
    """
    from xscan import __version__
    from xscan.synth.threats import THREAT_BUILDERS

    if n < 1:
        raise ValueError(f"n: the number of scans must be at least 1, got {n}")
    if workers < 1:
        raise ValueError(f"workers: must be at least 1, got {workers}")
    renderable = [c for c in BAGGAGE_CATEGORIES if c in THREAT_BUILDERS]
    cats = list(categories or sorted(threat_classes(renderable), key=renderable.index))
    bad = [c for c in cats if c not in THREAT_BUILDERS]
    if bad:
        raise ValueError(f"categories: cannot render {bad}; renderable: {sorted(THREAT_BUILDERS)}")
    check_params(params)
    params = dict(params or {})
    # project at twice the output size at most: enough for the final shrink, far cheaper
    params.setdefault("max_side", 2 * max(size_hw))
    out = Path(out)
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{out}: output folder is not writable ({e.strerror or e})") from None
    init = (list(backgrounds), cats, per_category, seed, params, scanner)
    jobs = [(str(out), i, _sample_seed(seed, i), tuple(size_hw)) for i in range(n)]
    results = run_jobs(_make_one, jobs, workers, progress, _init, init)
    names = list(BAGGAGE_CATEGORIES)
    names += sorted({a["label"] for _, anns in results for a in anns} - set(names))
    images, annotations = [], []
    for image, anns in results:
        images.append(image)
        for a in anns:
            rec = {k: v for k, v in a.items() if k != "label"}
            rec["category_id"] = names.index(a["label"]) + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], **rec})
    arguments = {
        "n": n,
        "size": f"{size_hw[1]}x{size_hw[0]}",
        "seed": seed,
        "backgrounds": len(backgrounds),
        "categories": cats,
        "per_category": per_category,
        "params": params,
        "scanner": scanner,
    }
    info = {
        "description": "xscan threat image projection scans",
        "generator": "xscan.data.tip_dataset",
        "xscan_version": __version__,
        "seed": seed,
    }
    coco = {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": c, "supercategory": "tip"} for i, c in enumerate(names)
        ],
    }
    (out / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    manifest = {
        "generator": "xscan.data.tip_dataset",
        "xscan_version": __version__,
        "arguments": arguments,
        "images": [
            {
                "file_name": im["file_name"],
                "has_threat": im["has_threat"],
                "background": im["background"],
            }
            for im in images
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
