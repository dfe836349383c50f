"""Dataset statistics: counts per class and subset, box size/aspect and image size histograms.

``compute_stats`` is numpy-only; ``write_plots`` draws PNGs with matplotlib (Agg backend).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from xscan.data.records import DatasetCollection

SIZE_BINS = [0, 8, 16, 32, 64, 96, 128, 256, 512, 1024, 100_000]  # sqrt(box area), pixels
ASPECT_BINS = [0, 0.25, 0.5, 0.75, 1 / 0.75, 2, 4, 1e9]  # width / height


def compute_stats(col: DatasetCollection) -> dict[str, Any]:
    """A JSON-ready summary of ``col``."""
    per_class = Counter(o.label for r in col.records for o in r.objects)
    images_per_class = Counter(lbl for r in col.records for lbl in {o.label for o in r.objects})
    image_level = Counter(k for r in col.records for k, v in r.image_labels.items() if v == 1)
    groups: dict[str, Counter] = {}
    for r in col.records:
        for g in [f"split:{r.split or '-'}"] + [f"subset:{s}" for s in r.subsets]:
            c = groups.setdefault(g, Counter())
            c["scans"] += 1
            c["objects"] += len(r.objects)
            c["threat"] += int(bool(r.is_threat))
            c["benign"] += int(r.is_threat is False)
    boxes = np.array([o.box for r in col.records for o in r.objects], np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sizes = np.sqrt(w * h)
    aspects = w / np.maximum(h, 1e-9)
    img_wh = np.array([(r.width, r.height) for r in col.records], np.float64).reshape(-1, 2)
    return {
        **col.summary(),
        "class_names": list(col.class_names),
        "per_class_objects": dict(per_class),
        "per_class_images": dict(images_per_class),
        "image_level_positive": dict(image_level),
        "groups": {g: dict(c) for g, c in sorted(groups.items())},
        "box_size_hist": _hist(sizes, SIZE_BINS),
        "box_aspect_hist": _hist(aspects, ASPECT_BINS),
        "box_size_median": float(np.median(sizes)) if len(sizes) else None,
        "image_width": _describe(img_wh[:, 0]),
        "image_height": _describe(img_wh[:, 1]),
        "_arrays": {"sizes": sizes, "aspects": aspects, "img_wh": img_wh},
    }


def _hist(values: np.ndarray, bins: list[float]) -> dict[str, int]:
    counts, edges = np.histogram(values, bins=bins)
    return {f"{edges[i]:.3g}-{edges[i + 1]:.3g}": int(c) for i, c in enumerate(counts)}


def _describe(v: np.ndarray) -> dict[str, float] | None:
    if not len(v):
        return None
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def format_table(stats: dict[str, Any]) -> str:
    lines = [
        f"{stats['source']}: {stats['records']} scans ({stats['threat_scans']} threat, "
        f"{stats['benign_scans']} benign), {stats['objects']} objects"
    ]
    lines.append(f"{'class':<24}{'objects':>9}{'scans':>9}{'img-level':>11}")
    for c in stats["class_names"]:
        lines.append(
            f"{c:<24}{stats['per_class_objects'].get(c, 0):>9}"
            f"{stats['per_class_images'].get(c, 0):>9}"
            f"{stats['image_level_positive'].get(c, 0):>11}"
        )
    lines.append(f"{'split / subset':<24}{'scans':>9}{'objects':>9}{'threat':>9}{'benign':>9}")
    for g, c in stats["groups"].items():
        lines.append(
            f"{g:<24}{c.get('scans', 0):>9}{c.get('objects', 0):>9}"
            f"{c.get('threat', 0):>9}{c.get('benign', 0):>9}"
        )
    if stats["objects"]:
        lines.append("box size sqrt(area) px: " + _inline(stats["box_size_hist"]))
        lines.append("box aspect w/h:        " + _inline(stats["box_aspect_hist"]))
    if stats["image_width"]:
        iw, ih = stats["image_width"], stats["image_height"]
        lines.append(
            f"image width  min/median/max: {iw['min']:.0f}/{iw['median']:.0f}/"
            f"{iw['max']:.0f}; height {ih['min']:.0f}/{ih['median']:.0f}/{ih['max']:.0f}"
        )
    lines.append(
        f"skipped {stats['skipped_records']} scans, {stats['skipped_objects']} objects; "
        f"{stats['errors']} errors, {stats['warnings']} warnings"
    )
    return "\n".join(lines)


def _class_counts(stats: dict[str, Any]) -> list[int]:
    src = stats["per_class_objects"] if stats["objects"] else stats["image_level_positive"]
    return [src.get(c, 0) for c in stats["class_names"]]


def _inline(h: dict[str, int]) -> str:
    return "  ".join(f"{k}:{v}" for k, v in h.items() if v)


def write_stats(stats: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``stats.json`` and PNG plots into ``out_dir``; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = stats["_arrays"]
    written = [out / "stats.json"]
    written[0].write_text(json.dumps({k: v for k, v in stats.items() if k != "_arrays"}, indent=2))
    plots = [
        (
            "class_counts.png",
            "objects (or image-level positives) per class",
            lambda ax: ax.barh(stats["class_names"], _class_counts(stats)),
        ),
        (
            "box_size.png",
            "box size sqrt(area), pixels",
            lambda ax: ax.hist(arrays["sizes"], bins=40),
        ),
        (
            "box_aspect.png",
            "box aspect log2(w/h)",
            lambda ax: ax.hist(np.log2(np.maximum(arrays["aspects"], 1e-6)), bins=40),
        ),
        (
            "image_size.png",
            "image width vs height, pixels",
            lambda ax: ax.scatter(arrays["img_wh"][:, 0], arrays["img_wh"][:, 1], s=4),
        ),
    ]
    for name, title, draw in plots:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
        draw(ax)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written
