"""Online threat image projection (TIP): threats projected into benign scans.

A :class:`ThreatLibrary` holds threat patches: transmission-like images of a threat alone
(1.0 = air outside it) with a mask. Patches are rendered by the synthetic generator
(:meth:`ThreatLibrary.from_synth`) or cut from boxed datasets (:meth:`from_records`, using the
object's mask where the dataset has one). :class:`TipGenerator` projects 1..n of them into a
benign scan per seed, returning a :class:`~xscan.data.torch_dataset.Sample` with a box and a
mask for every new object.

Projection multiplies transmissions, ``T = T_background * T_threat``: attenuations add along a
ray (Beer-Lambert), so an item placed in a bag darkens it as a real one would. Into raw
low/high backgrounds that product is exact; rendered threats go into false-colour scans
(e.g. real SIXray) through the generator's palette inversion
(:func:`xscan.synth.tip.project_false_color`); patches cut from false-colour scans are
multiplied channel by channel, the usual TIP approximation.

Placement is controlled by ``TIP_DEFAULTS``: count, size relative to the scan, ``inside``
(threat centre on bag, not air) or ``uniform`` placement, a target occlusion range (fraction of
the threat lying over dense clutter, ``-ln T > 0.7``), rotation and overlap avoidance.
Numpy and OpenCV only; deterministic in the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xscan.data.records import ScanRecord
from xscan.data.sample import Sample, decode_rle
from xscan.imageio import IMAGE_SUFFIXES, read_image, read_raw_pair
from xscan.preprocess import to_unit_float

TIP_DEFAULTS: dict[str, Any] = {
    "count": [1, 2],  # threats per scan, inclusive
    "size": [0.15, 0.35],  # longest threat side / shorter scan side
    "placement": "inside",  # inside | uniform
    "occlusion": [0.0, 1.0],  # accepted fraction of the threat over dense clutter
    "rotate": True,  # random 90-degree turns and flips of the patch
    "max_overlap": 0.3,  # IoU limit with objects already in the scan
    "tries": 20,  # candidate positions per threat
    "max_side": None,  # shrink larger backgrounds to this many pixels first (speed)
}
DENSE = 0.7  # -ln T above which the background counts as dense clutter


@dataclass
class ThreatPatch:
    """``image``: ``(h, w, C) float32`` in (0, 1], 1 outside the threat (C = 3 false colour,
    2 raw low/high transmissions, 1 gray); ``mask``: ``(h, w) bool``; ``label``: class name;
    ``scanner``: the scanner model a raw patch was rendered for."""

    image: np.ndarray
    mask: np.ndarray
    label: str
    scanner: str = "baggage"


def _float_image(img: np.ndarray) -> np.ndarray:
    x = to_unit_float(img)
    return x[:, :, None] if x.ndim == 2 else x


class ThreatLibrary:
    def __init__(self, patches: Sequence[ThreatPatch]) -> None:
        if not patches:
            raise ValueError("threat library: no threat patches")
        self.patches = list(patches)

    def __len__(self) -> int:
        return len(self.patches)

    @classmethod
    def from_records(
        cls,
        records: Sequence[ScanRecord],
        labels: Sequence[str] | None = None,
        max_patches: int = 500,
        min_side: int = 8,
        raw: bool = False,
    ) -> ThreatLibrary:
        """Cut threats out of boxed scans (mask where known, else the darker pixels of the
        box). ``labels`` restricts the classes; ``raw`` cuts from raw low/high pairs."""
        out: list[ThreatPatch] = []
        for rec in records:
            objs = [o for o in rec.objects if labels is None or o.label in labels]
            objs = [o for o in objs if min(o.box[2] - o.box[0], o.box[3] - o.box[1]) >= min_side]
            if not objs:
                continue
            img = (
                read_raw_pair(rec.raw_low, rec.raw_high)
                if raw
                else _float_image(read_image(rec.image))
            )
            for o in objs:
                out.append(_cut(img, o.box, decode_rle(o.mask) if o.mask else None, o.label))
                if len(out) >= max_patches:
                    return cls(out)
        return cls(out)

    @classmethod
    def from_synth(
        cls,
        categories: Sequence[str],
        per_category: int = 8,
        seed: int = 0,
        scanner: str = "baggage",
        pixel_cm: float = 0.15,
    ) -> ThreatLibrary:
        """Threats rendered by :func:`xscan.synth.generator.render_threat_patch`, kept as raw
        low/high transmissions so each background type gets its own projection."""
        from xscan.synth.generator import render_threat_patch

        out = []
        for k, cat in enumerate(categories):
            for j in range(per_category):
                s = int(np.random.SeedSequence([seed, k, j]).generate_state(1)[0] & 0x7FFFFFFF)
                low, high, mask = render_threat_patch(cat, s, scanner, pixel_cm)
                pair = np.stack([low, high], axis=-1).astype(np.float32)
                out.append(ThreatPatch(pair, mask, cat, scanner))
        return cls(out)


def _cut(img: np.ndarray, box: Sequence[float], mask: np.ndarray | None, label: str) -> ThreatPatch:
    h, w = img.shape[:2]
    x1, y1 = max(int(math.floor(box[0])), 0), max(int(math.floor(box[1])), 0)
    x2, y2 = min(int(math.ceil(box[2])), w), min(int(math.ceil(box[3])), h)
    crop = img[y1:y2, x1:x2].astype(np.float32).copy()
    if mask is not None:
        m = mask[y1:y2, x1:x2].copy()
    else:
        m = crop.mean(axis=2) < 0.92  # darker than near-air
        m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
    if not m.any():
        m[:] = True
    crop[~m] = 1.0
    return ThreatPatch(crop, m, label)


def list_backgrounds(folder: str | Path, pattern: str = "*") -> list[ScanRecord]:
    """Benign scans from a folder of images matching ``pattern`` (e.g. SIXray ``N*.jpg``)."""
    folder = Path(folder)
    paths = sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder}: no images matching {pattern!r} for TIP backgrounds")
    return [
        ScanRecord(image=str(p), width=0, height=0, source="tip-background", is_threat=False)
        for p in paths
    ]


def benign_backgrounds(
    path: str | Path, fmt: str | None = None, split: str | None = None, pattern: str = "*"
) -> list[ScanRecord]:
    """Benign scans: the benign records of a dataset (``fmt`` a reader kind, e.g.
    ``xray_real_dev`` with ``split="tip"``), or the images in a folder matching ``pattern``."""
    if fmt is None:
        return list_backgrounds(path, pattern)
    from xscan.data.registry import load_dataset

    col = load_dataset(fmt, path, split)
    benign = [r for r in col.records if r.is_threat is False]
    if not benign:
        raise ValueError(f"tip backgrounds {path}: no benign scans (split {split!r})")
    return benign


def threat_classes(names: Sequence[str]) -> set[str]:
    """The names among ``names`` that the taxonomy counts as threats."""
    from xscan.data.taxonomy import LabelMapper

    taxonomy = LabelMapper("coco")
    return {c for c in names if taxonomy.is_threat(taxonomy(c)[1])}


def check_params(params: dict[str, Any] | None) -> None:
    unknown = sorted(set(params or {}) - set(TIP_DEFAULTS))
    if unknown:
        raise ValueError(f"tip params: unknown key(s) {unknown}; known: {sorted(TIP_DEFAULTS)}")


class TipGenerator:
    """Benign backgrounds + a threat library -> a projected :class:`Sample` per seed."""

    def __init__(
        self,
        backgrounds: Sequence[ScanRecord],
        library: ThreatLibrary,
        params: dict[str, Any] | None = None,
        raw: bool = False,
        threat_labels: set[str] | None = None,
    ) -> None:
        check_params(params)
        if not backgrounds:
            raise ValueError("tip: no benign background scans")
        self.backgrounds = list(backgrounds)
        self.library = library
        self.p = {**TIP_DEFAULTS, **(params or {})}
        if self.p["placement"] not in ("inside", "uniform"):
            raise ValueError(
                f"tip placement: expected inside or uniform, got {self.p['placement']!r}"
            )
        self.raw = raw
        self.threat_labels = threat_labels

    def _background(self, rec: ScanRecord) -> Sample:
        # shrink while still 8/16-bit: a quarter of the bytes to convert to float
        img = read_raw_pair(rec.raw_low, rec.raw_high) if self.raw else read_image(rec.image)
        boxes = np.array([o.box for o in rec.objects], np.float32).reshape(-1, 4)
        masks = [decode_rle(o.mask) if o.mask else None for o in rec.objects]
        img, boxes, masks = _shrink(img, boxes, masks, self.p["max_side"])
        img = img if self.raw else _float_image(img)
        return Sample(
            img, boxes, [o.label for o in rec.objects], masks, bool(rec.is_threat), rec.image or ""
        )

    def sample(self, seed: int) -> Sample:
        rng = np.random.default_rng(int(seed))
        bg = self._background(self.backgrounds[int(rng.integers(len(self.backgrounds)))])
        image = bg.image.astype(np.float32, copy=True)
        gray = not self.raw and is_gray_rgb(image)
        boxes, labels, masks = list(bg.boxes), list(bg.labels), list(bg.masks)
        lo, hi = (int(v) for v in self.p["count"])
        for _ in range(int(rng.integers(lo, hi + 1))):
            patch = self.library.patches[int(rng.integers(len(self.library)))]
            placed = self._place(image, patch, boxes, rng, gray)
            if placed is None:
                continue
            image, box, mask, occ = placed
            boxes.append(np.asarray(box, np.float32))
            labels.append(patch.label)
            masks.append(mask)
        added = len(labels) > len(bg.labels)
        threat = bg.is_threat or (
            added
            and (
                self.threat_labels is None
                or any(lbl in self.threat_labels for lbl in labels[len(bg.labels) :])
            )
        )
        return Sample(
            image,
            np.array(boxes, np.float32).reshape(-1, 4),
            labels,
            masks,
            bool(threat),
            f"tip:{bg.path}#{seed}",
        )

    def _place(
        self,
        image: np.ndarray,
        patch: ThreatPatch,
        boxes: list,
        rng: np.random.Generator,
        gray: bool = False,
    ) -> tuple[np.ndarray, tuple, np.ndarray, float] | None:
        H, W = image.shape[:2]
        pimg, pmask = _fit(patch, rng, self.p, min(H, W))
        ph, pw = pmask.shape
        if ph >= H or pw >= W:
            return None
        inside = np.empty((0, 2), np.int64)
        if self.p["placement"] == "inside":  # candidate centres on a 4-px grid, over the bag
            inside = np.argwhere(_attenuation(image[::4, ::4]) > 0.05) * 4
        olo, ohi = self.p["occlusion"]
        best = None
        for _ in range(int(self.p["tries"])):
            if len(inside):
                cy, cx = inside[int(rng.integers(len(inside)))]
                y0 = int(np.clip(cy - ph // 2, 0, H - ph))
                x0 = int(np.clip(cx - pw // 2, 0, W - pw))
            else:
                y0, x0 = int(rng.integers(0, H - ph + 1)), int(rng.integers(0, W - pw + 1))
            if any(_iou((x0, y0, x0 + pw, y0 + ph), b) > self.p["max_overlap"] for b in boxes):
                continue
            occ = float((_attenuation(image[y0 : y0 + ph, x0 : x0 + pw])[pmask] > DENSE).mean())
            miss = max(olo - occ, occ - ohi, 0.0)
            if best is None or miss < best[0]:
                best = (miss, y0, x0, occ)
            if miss == 0.0:
                break
        if best is None:
            return None
        _, y0, x0, occ = best
        out = image  # the caller's working copy
        _project(out[y0 : y0 + ph, x0 : x0 + pw], pimg, pmask, patch.scanner, gray)
        full = np.zeros((H, W), bool)
        full[y0 : y0 + ph, x0 : x0 + pw] = pmask
        ys, xs = np.nonzero(pmask)
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1.0, y0 + ys.max() + 1.0)
        return out, tuple(float(v) for v in box), full, occ


def _attenuation(img: np.ndarray) -> np.ndarray:
    """``-ln T`` of the mean over channels, ``(h, w) float32``."""
    return -np.log(np.clip(img.mean(axis=2), 1e-4, 1.0))


def _shrink(
    img: np.ndarray, boxes: np.ndarray, masks: list, max_side: int | None
) -> tuple[np.ndarray, np.ndarray, list]:
    """Scale a background (and its objects) down so its longer side is ``max_side``."""
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, boxes, masks
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out = out.reshape(size[1], size[0], *img.shape[2:])
    masks = [
        None
        if m is None
        else cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        for m in masks
    ]
    return out, boxes * np.float32(s), masks


def is_gray_rgb(image: np.ndarray, tol: float = 3 / 255) -> bool:
    """Whether a 3-channel float image is grayscale stored as colour (GDXray's RGB JPEGs):
    its channels agree everywhere within ``tol`` (JPEG chroma noise)."""
    if image.ndim != 3 or image.shape[2] != 3:
        return False
    return bool(
        np.abs(image[:, :, 0] - image[:, :, 1]).max() <= tol
        and np.abs(image[:, :, 1] - image[:, :, 2]).max() <= tol
    )


def _project(
    region: np.ndarray, pimg: np.ndarray, pmask: np.ndarray, scanner: str, gray: bool = False
) -> None:
    """Multiply a threat into ``region`` (a view of the background, float in [0, 1]).

    Raw low/high patches go into false-colour backgrounds through the generator's palette
    inversion (:func:`xscan.synth.tip.project_false_color`), into raw backgrounds by the exact
    product of transmissions, and into gray ones (``gray``: also a gray scan stored as RGB)
    through their high-energy channel. False-colour and gray patches (cut from scans) are
    multiplied channel by channel.
    """
    c_bg, c_p = region.shape[2], pimg.shape[2]
    if c_p == 2 and gray:
        region *= np.where(pmask[:, :, None], pimg[:, :, 1:2], 1.0)
        return
    if c_p == 2 and c_bg == 3:
        from xscan.synth.tip import project_false_color

        rgb = np.round(region * 255.0).astype(np.uint8)
        out = project_false_color(rgb, pimg[:, :, 0], pimg[:, :, 1], 0, 0, scanner)
        region[pmask] = out[pmask].astype(np.float32) / 255.0
        return
    if c_p == 2 and c_bg == 1:
        pimg = pimg[:, :, 1:2]
    elif c_p != c_bg:
        pimg = pimg.mean(axis=2, keepdims=True)  # broadcast one transmission over channels
    region *= np.where(pmask[:, :, None], pimg, 1.0)


def _fit(
    patch: ThreatPatch, rng: np.random.Generator, p: dict, short: int
) -> tuple[np.ndarray, np.ndarray]:
    img, mask = patch.image, patch.mask
    if p["rotate"]:
        k = int(rng.integers(4))
        img, mask = np.rot90(img, k), np.rot90(mask, k)
        if rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
    lo, hi = p["size"]
    target = max(4, int(round(rng.uniform(lo, hi) * short)))
    s = target / max(img.shape[:2])
    size = (max(1, int(round(img.shape[1] * s))), max(1, int(round(img.shape[0] * s))))
    img = cv2.resize(np.ascontiguousarray(img, np.float32), size, interpolation=cv2.INTER_AREA)
    mask = (
        cv2.resize(np.ascontiguousarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    )
    img = img.reshape(mask.shape[0], mask.shape[1], -1)
    if img.shape[2] == 2:  # raw: the object is wherever it attenuates (rim pixels included)
        mask = (img < 1.0 - 1e-3).any(axis=2)
        img[~mask] = 1.0
    if not mask.any():
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = True
    return img, mask


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
