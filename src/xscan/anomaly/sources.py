"""Labelled scans for anomaly training and evaluation, from the config's data sources.

A :class:`LabelledScan` is a decoded scan (as :mod:`xscan.imageio` returns it, or a float
``(H, W, 2)`` low/high transmission pair for ``raw_dual``), an image label (1 = contains an
anomaly/threat) and, where known, a ``(H, W) bool`` anomaly mask.

Source kinds (``DataSource.kind``):

* ``synth``: scans generated on the fly with ``xscan.synth.generator.generate_scan``;
  ``params``: ``kind`` (cargo|baggage), ``size`` [h, w], ``count``, ``seed``, ``options``
  (passed to the generator, e.g. ``threat_fraction: 0`` for benign-only training).
* ``xscan``: a folder written by ``xscan synth`` (COCO ``annotations.json`` with masks and
  ``has_threat``).
* ``xray_real_dev``: ``labels.csv`` folders (SIXray, GDXray) with ``image`` and ``is_threat``.
* ``folder``: every image below ``path``, all taken as benign (a user's cleared scans).

``params.part`` (``train``, ``calib``, ``test`` or ``all``, default all) splits a source
reproducibly: benign scans are divided by a seeded permutation (``params.fractions``, default
[0.6, 0.2, 0.2], ``params.split_seed``), and every anomalous scan belongs to ``test``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xscan.imageio import IMAGE_SUFFIXES, read_image


@dataclass
class LabelledScan:
    name: str
    image: np.ndarray
    label: int
    mask: np.ndarray | None = None


@dataclass
class ScanRef:
    """A scan not yet decoded: ``load()`` returns the :class:`LabelledScan`."""

    name: str
    label: int
    loader: Any

    def load(self) -> LabelledScan:
        return self.loader()


def _split(refs: list[ScanRef], params: dict[str, Any], where: str) -> list[ScanRef]:
    part = params.get("part", "all")
    if part == "all":
        return refs
    if part not in ("train", "calib", "test"):
        raise ValueError(f"{where}.params.part: expected train|calib|test|all, got {part!r}")
    fr = [float(f) for f in params.get("fractions", [0.6, 0.2, 0.2])]
    if len(fr) != 3 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"{where}.params.fractions: expected three fractions summing to 1")
    benign = [r for r in refs if r.label == 0]
    order = np.random.default_rng(int(params.get("split_seed", 0))).permutation(len(benign))
    n_tr, n_ca = int(round(fr[0] * len(benign))), int(round(fr[1] * len(benign)))
    idx = {"train": order[:n_tr], "calib": order[n_tr : n_tr + n_ca], "test": order[n_tr + n_ca :]}
    chosen = [benign[i] for i in sorted(idx[part])]
    if part == "test":
        chosen += [r for r in refs if r.label != 0]
    return chosen


def _labels_csv(path: Path, modality: str) -> list[ScanRef]:
    csv_path = path / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: labels.csv not found (xray_real_dev layout)")
    refs = []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            if "image" not in row or "is_threat" not in row:
                raise ValueError(f"{csv_path}: expected columns 'image' and 'is_threat'")
            p = path / row["image"]
            refs.append(
                ScanRef(row["image"], int(row["is_threat"]), _file_loader(p, row, modality))
            )
    return refs


def _file_loader(p: Path, row: dict[str, Any], modality: str):
    def load() -> LabelledScan:
        return LabelledScan(str(p.name), read_image(p), int(row.get("is_threat", 0)))

    return load


def _folder(path: Path) -> list[ScanRef]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no images found")
    return [ScanRef(str(p.relative_to(path)), 0, _file_loader(p, {}, "")) for p in files]


def _xscan_folder(path: Path, modality: str) -> list[ScanRef]:
    ann = path / "annotations.json"
    if not ann.is_file():
        raise FileNotFoundError(f"{ann}: not found (expected a folder written by xscan synth)")
    coco = json.loads(ann.read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(a["image_id"], []).append(a)
    refs = []
    for im in coco["images"]:
        label = int(bool(im.get("has_threat", False)))
        refs.append(
            ScanRef(
                im["file_name"], label, _coco_loader(path, im, by_image.get(im["id"], []), modality)
            )
        )
    return refs


def _coco_loader(root: Path, im: dict, anns: list[dict], modality: str):
    def load() -> LabelledScan:
        from pycocotools import mask as mask_utils

        if modality == "raw_dual":
            from xscan.imageio import read_raw_pair

            image = read_raw_pair(root / im["raw_low"], root / im["raw_high"])
        else:
            image = read_image(root / "images" / im["file_name"])
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        for a in anns:
            if not a.get("is_threat", True):
                continue
            seg = a.get("segmentation")
            if isinstance(seg, dict):
                rle = dict(seg)
                if isinstance(rle.get("counts"), str):
                    rle["counts"] = rle["counts"].encode()
                mask |= mask_utils.decode(rle).astype(bool)
            else:
                x, y, bw, bh = (int(round(v)) for v in a["bbox"])
                mask[y : y + bh, x : x + bw] = True
        label = int(bool(im.get("has_threat", False)))
        return LabelledScan(im["file_name"], image, label, mask if label else np.zeros_like(mask))

    return load


def _synth(params: dict[str, Any], modality: str, where: str) -> list[ScanRef]:
    from xscan.synth.generator import SynthOptions, generate_scan

    kind = params.get("kind", "cargo")
    size = tuple(int(s) for s in params.get("size", [1024, 2048]))
    count = int(params.get("count", 32))
    seed = int(params.get("seed", 0))
    try:
        options = SynthOptions(**dict(params.get("options", {})))
        options.validate()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}.params.options: {e}") from e

    def loader(i: int):
        def load() -> LabelledScan:
            scan = generate_scan(kind, size, seed + i, options)
            return scan_to_labelled(scan, f"{kind}_{seed + i:06d}", modality)

        return load

    # Labels are known only after generation; the split of synthetic sources is by seed
    # (use distinct seeds for train, calibration and test instead of params.part).
    if params.get("part", "all") != "all":
        raise ValueError(f"{where}.params.part: synth sources are split by seed, not by part")
    return [ScanRef(f"{kind}_{seed + i:06d}", -1, loader(i)) for i in range(count)]


def scan_to_labelled(scan: Any, name: str, modality: str) -> LabelledScan:
    """A generator ``Scan`` -> :class:`LabelledScan` (mask = union of threat object masks)."""
    if modality == "raw_dual":
        image = np.stack([scan.t_low, scan.t_high], axis=2).astype(np.float32)
    else:
        image = scan.rgb
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    for obj in getattr(scan, "objects", []) or []:
        if getattr(obj, "is_threat", False) and getattr(obj, "mask", None) is not None:
            m = np.asarray(obj.mask, bool)
            if m.shape == (h, w):
                mask |= m
    return LabelledScan(name, image, int(bool(scan.has_threat)), mask)


def scan_refs(sources: list, modality: str, where: str = "data") -> list[ScanRef]:
    """All scans of a list of ``DataSource`` (lazy: nothing is decoded yet)."""
    refs: list[ScanRef] = []
    for i, src in enumerate(sources):
        w = f"{where}[{i}]"
        params = dict(src.params or {})
        if src.kind == "synth":
            refs += _synth(params, modality, w)
            continue
        if not src.path:
            raise ValueError(f"{w}.path: required for kind {src.kind!r}")
        path = Path(src.path)
        if not path.exists():
            raise FileNotFoundError(f"{w}.path: {path} does not exist")
        if src.kind == "xray_real_dev":
            r = _labels_csv(path, modality)
        elif src.kind == "xscan":
            r = _xscan_folder(path, modality)
        elif src.kind == "folder":
            r = _folder(path)
        else:
            raise ValueError(
                f"{w}.kind: anomaly data sources are synth|xscan|xray_real_dev|folder, "
                f"got {src.kind!r}"
            )
        refs += _split(r, params, w)
    return refs


def iter_scans(refs: list[ScanRef]) -> Iterator[LabelledScan]:
    for r in refs:
        yield r.load()


def dataset_refs(
    path: str | Path, kind: str | None, split: str | None, modality: str
) -> list[ScanRef]:
    """Scans of an evaluation dataset given on the command line: ``kind`` (``xscan``,
    ``xray_real_dev`` or ``folder``) or detected from the layout (``annotations.json`` ->
    xscan, ``labels.csv`` -> xray_real_dev); ``split`` is a ``params.part``."""
    from types import SimpleNamespace

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: dataset not found")
    if kind is None:
        if (p / "annotations.json").is_file():
            kind = "xscan"
        elif (p / "labels.csv").is_file():
            kind = "xray_real_dev"
        else:
            raise ValueError(
                f"{p}: cannot tell the layout (no annotations.json or labels.csv); anomaly "
                "evaluation needs labelled scans (--format xscan|xray_real_dev)"
            )
    params = {"part": split} if split else {}
    src = SimpleNamespace(kind=kind, path=str(p), params=params)
    return scan_refs([src], modality, "dataset")
