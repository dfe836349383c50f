"""A decoded scan with its objects, before preprocessing (numpy only, no torch).

Readers' records, threat image projection and the synthetic generator all produce a
:class:`Sample`; :func:`xscan.data.torch_dataset.encode_sample` turns one into network input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xscan.data.records import ScanRecord
from xscan.imageio import read_image, read_raw_pair


@dataclass
class Sample:
    """A decoded scan before preprocessing: what readers, TIP and the generator all produce.

    ``image``: as :func:`xscan.imageio.read_image` returns it (uint8/uint16, gray or RGB), a
    float32 ``(H, W, 3)`` image in [0, 1], or a raw ``(H, W, 2)`` float32 low/high pair.
    ``boxes``: ``(N, 4) float32`` xyxy original pixels; ``labels``: class names;
    ``masks``: per object ``(H, W) bool`` or ``None``.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    masks: list[np.ndarray | None] = field(default_factory=list)
    is_threat: bool = False
    path: str = ""


def decode_rle(mask: dict[str, Any]) -> np.ndarray:
    """COCO RLE -> ``(H, W) bool``."""
    from pycocotools import mask as mask_utils

    m = dict(mask)
    if isinstance(m["counts"], str):
        m["counts"] = m["counts"].encode("ascii")
    return mask_utils.decode(m).astype(bool)


def _read_image(rec: ScanRecord, modality: str) -> np.ndarray:
    if modality != "raw_dual":
        return read_image(rec.image)
    if not (rec.raw_low and rec.raw_high):
        raise ValueError(
            f"{rec.image}: raw_dual models need raw low/high images; this "
            f"{rec.source} scan has none"
        )
    return read_raw_pair(rec.raw_low, rec.raw_high)


def load_record(
    rec: ScanRecord, modality: str, with_masks: bool = False, image: np.ndarray | None = None
) -> Sample:
    """Decode a record's image (raw pair for ``raw_dual``) and objects into a :class:`Sample`;
    ``image``: the record's image already decoded (a cached copy), used instead of reading it."""
    if image is None:
        image = _read_image(rec, modality)
    boxes = np.array([o.box for o in rec.objects], np.float32).reshape(-1, 4)
    masks: list[np.ndarray | None] = []
    if with_masks:
        masks = [decode_rle(o.mask) if o.mask else None for o in rec.objects]
    return Sample(
        image,
        boxes,
        [o.label for o in rec.objects],
        masks,
        bool(rec.is_threat),
        rec.image or rec.raw_low or "",
    )
