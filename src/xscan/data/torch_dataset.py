"""Torch datasets over scan records, in the network's input space.

An item is ``(image, target)``:

* ``image``: ``(C, H, W) float32`` tensor in [0, 1] at ``spec.input_size``, made by
  :func:`xscan.preprocess.prepare`'s two steps (modality, letterbox) so training sees exactly
  what the runtime sees;
* ``target``: ``boxes`` ``(N, 4) float32`` xyxy in network-input pixels, ``labels`` ``(N,)
  int64`` 0-based indices into the class list (``spec.class_names`` unless given),
  ``image_id`` int, ``is_threat`` bool, ``path`` str, ``orig_size`` ``(h, w)`` and
  ``letterbox`` ``(scale_x, scale_y, pad_x, pad_y)`` (the un-augmented mapping original ->
  input, for mapping predictions back); ``masks`` ``(N, H, W) uint8`` only when asked for.

Objects whose class is not in the class list are dropped and counted
(``dataset.dropped_objects``). Augmentation is seeded from ``(seed, epoch, index)``: an item
is the same in any worker process and on every run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from xscan.data.records import DatasetCollection, ScanRecord
from xscan.data.sample import Sample, load_record
from xscan.preprocess import letterbox, to_modality
from xscan.spec import ModelSpec

# OpenCV's own thread pool does not survive fork(): DataLoader workers forked from a process
# that has used it can hang on its lock. Parallelism comes from the workers instead.
cv2.setNumThreads(0)

log = logging.getLogger(__name__)

# transform(image (H, W, C) float32, boxes (N, 4), labels (N,), masks (N, H, W) | None, seed)
Transform = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 31-bit seed from ``(seed, epoch, index)``; no shared RNG state."""
    return int(
        np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0]
        & 0x7FFFFFFF
    )


def _letterbox_mask(mask: np.ndarray, spec: ModelSpec) -> np.ndarray:
    out, _ = letterbox(mask.astype(np.float32)[:, :, None], spec.input_size, 0.0, spec.resize)
    return out[:, :, 0] > 0.5


def _box_mask(box: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    m[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return m


def encode_sample(
    sample: Sample,
    spec: ModelSpec,
    class_index: dict[str, int],
    transform: Transform | None = None,
    seed: int = 0,
    image_id: int = 0,
    return_masks: bool = False,
) -> tuple[torch.Tensor, dict[str, Any], int]:
    """Sample -> ``(image tensor, target, objects dropped for an unknown class)``."""
    x = to_modality(sample.image, spec.modality)
    x, info = letterbox(x, spec.input_size, spec.pad_value, spec.resize)
    keep = [i for i, lbl in enumerate(sample.labels) if lbl in class_index]
    dropped = len(sample.labels) - len(keep)
    boxes = info.boxes_to_input(sample.boxes[keep]) if keep else np.zeros((0, 4), np.float32)
    labels = np.array([class_index[sample.labels[i]] for i in keep], np.int64)
    masks = None
    th, tw = spec.input_size
    if return_masks or (transform is not None and getattr(transform, "uses_masks", False)):
        src = sample.masks or [None] * len(sample.labels)
        masks = (
            np.stack(
                [
                    _letterbox_mask(src[i], spec) if src[i] is not None else _box_mask(b, th, tw)
                    for i, b in zip(keep, boxes, strict=True)
                ]
            ).astype(np.uint8)
            if keep
            else np.zeros((0, th, tw), np.uint8)
        )
    if transform is not None:
        x, boxes, labels, masks = transform(x, boxes, labels, masks, seed=seed)
        th, tw = x.shape[:2]  # a training crop is smaller than the input
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, tw)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, th)
    ok = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    target: dict[str, Any] = {
        "boxes": torch.from_numpy(np.ascontiguousarray(boxes[ok])),
        "labels": torch.from_numpy(np.asarray(labels, np.int64)[ok]),
        "image_id": int(image_id),
        "is_threat": bool(sample.is_threat),
        "path": sample.path,
        "orig_size": (info.orig_h, info.orig_w),
        "letterbox": (info.scale_x, info.scale_y, info.pad_x, info.pad_y),
    }
    if return_masks:
        target["masks"] = torch.from_numpy(np.ascontiguousarray(np.asarray(masks)[ok]))
    image = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
    return image, target, dropped


class DetectionDataset(Dataset):
    """Records -> network-ready items (see the module docstring).

    ``class_names`` (default ``spec.class_names``) is the list ``labels`` index into.
    ``transform``: e.g. :func:`xscan.data.augment.build_augment`; ``seed`` and
    :meth:`set_epoch` make its randomness a function of ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        records: Sequence[ScanRecord] | DatasetCollection,
        spec: ModelSpec,
        transform: Transform | None = None,
        class_names: Sequence[str] | None = None,
        *,
        seed: int = 0,
        return_masks: bool = False,
    ) -> None:
        self.records = list(records.records if isinstance(records, DatasetCollection) else records)
        self.spec = spec
        self.transform = transform
        self.class_names = list(class_names or spec.class_names)
        self.class_index = {c: i for i, c in enumerate(self.class_names)}
        self.seed = int(seed)
        self.epoch = 0
        self.return_masks = return_masks
        self.dropped_objects = Counter(
            o.label for r in self.records for o in r.objects if o.label not in self.class_index
        )
        if self.dropped_objects:
            log.warning(
                "objects of classes not in the model's class list are dropped: %s",
                dict(self.dropped_objects),
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rec = self.records[index]
        need_masks = self.return_masks or getattr(self.transform, "uses_masks", False)
        sample = load_record(rec, self.spec.modality, with_masks=need_masks)
        image, target, _ = encode_sample(
            sample,
            self.spec,
            self.class_index,
            self.transform,
            item_seed(self.seed, self.epoch, index),
            index,
            self.return_masks,
        )
        return image, target


def collate_detections(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """``[(image, target)]`` -> ``(images (B, C, H, W), [target])``."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]
