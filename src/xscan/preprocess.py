"""The one preprocessing path shared by training data, the runtime, scoring and the service.

Numpy and OpenCV only. Normalisation by ``spec.mean``/``spec.std`` is *not* done here: it is
part of the model (and of the exported graph). Here images are converted to the spec's
modality, scaled to [0, 1] and resized to ``spec.input_size``.

Coordinate convention: boxes are ``(N, 4) float32 xyxy`` in pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from xscan.spec import ModelSpec


@dataclass(frozen=True)
class LetterboxInfo:
    """How an original image was mapped into the network input: ``x_in = x * sx + pad_x``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_h: int
    orig_w: int

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4) xyxy`` boxes from input pixels back to original pixels, clipped."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.pad_x) / self.scale_x
        b[:, [1, 3]] = (b[:, [1, 3]] - self.pad_y) / self.scale_y
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, self.orig_w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, self.orig_h)
        return b

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.scale_x + self.pad_x
        b[:, [1, 3]] = b[:, [1, 3]] * self.scale_y + self.pad_y
        return b

    def map_to_original(self, amap: np.ndarray) -> np.ndarray:
        """Resize an input-space map ``(h, w)`` (any resolution) back to ``(orig_h, orig_w)``."""
        amap = np.asarray(amap, np.float32)
        # Express the map at input resolution, crop the padding, then resize to the original.
        in_h = round(self.orig_h * self.scale_y + 2 * self.pad_y)
        in_w = round(self.orig_w * self.scale_x + 2 * self.pad_x)
        full = cv2.resize(amap, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        y0, x0 = int(round(self.pad_y)), int(round(self.pad_x))
        y1 = y0 + max(1, int(round(self.orig_h * self.scale_y)))
        x1 = x0 + max(1, int(round(self.orig_w * self.scale_x)))
        crop = full[y0:y1, x0:x1]
        return cv2.resize(crop, (self.orig_w, self.orig_h), interpolation=cv2.INTER_LINEAR)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float32 in [0, 1], same layout."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * (1.0 / 255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * (1.0 / 65535.0)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_modality(image: np.ndarray, modality: str) -> np.ndarray:
    """Convert a decoded image to ``(H, W, C) float32`` in [0, 1] for ``modality``.

    * ``false_color``: RGB; a grayscale image is replicated to three channels.
    * ``gray``: one channel; an RGB image is converted by luminance.
    * ``raw_dual``: an ``(H, W, 2)`` float transmission pair (low, high) gets a third channel,
      the effective atomic number from the dual-energy calibration, divided by 100; an
      ``(H, W, 3)`` float array is taken as already complete.
    """
    if modality == "raw_dual":
        if image.ndim != 3 or image.shape[2] not in (2, 3) or image.dtype != np.float32:
            raise ValueError(
                "raw_dual models need a (H, W, 2) float32 low/high transmission pair "
                f"(got {image.dtype} {image.shape}); read it with xscan.imageio.read_raw_pair"
            )
        if image.shape[2] == 3:
            return np.clip(image, 0.0, 1.0)
        from xscan.synth.zeff import effective_z  # numpy-only physics calibration

        z = effective_z(image[..., 0], image[..., 1]) / 100.0
        return np.concatenate([np.clip(image, 0.0, 1.0), z[..., None].astype(np.float32)], axis=2)
    img = to_unit_float(image)
    if modality == "false_color":
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.shape[2] != 3:
            raise ValueError(f"false_color models need RGB or grayscale images, got {image.shape}")
        return img
    if modality == "gray":
        if img.ndim == 3:
            if img.shape[2] == 3:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            else:
                raise ValueError(f"gray models need RGB or grayscale images, got {image.shape}")
        return img[:, :, None]
    raise ValueError(f"unknown modality {modality!r}")


def letterbox(
    image: np.ndarray, size_hw: tuple[int, int], pad_value: float = 1.0, mode: str = "letterbox"
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``(H, W, C) float32`` to ``size_hw``.

    ``letterbox`` keeps the aspect ratio and pads (centred) with ``pad_value``;
    ``stretch`` resizes each axis independently.
    """
    h, w = image.shape[:2]
    th, tw = size_hw
    if h == 0 or w == 0:
        raise ValueError("empty image")
    if mode == "stretch":
        sx, sy, px, py = tw / w, th / h, 0.0, 0.0
        nw, nh = tw, th
    else:
        s = min(tw / w, th / h)
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        sx, sy = nw / w, nh / h
        px, py = (tw - nw) / 2.0, (th - nh) / 2.0
    interp = cv2.INTER_AREA if (nw < w or nh < h) else cv2.INTER_LINEAR
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    c = image.shape[2] if image.ndim == 3 else 1
    out = np.full((th, tw, c), pad_value, np.float32)
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    out[y0 : y0 + nh, x0 : x0 + nw] = resized.reshape(nh, nw, c)
    info = LetterboxInfo(sx, sy, float(x0), float(y0), h, w)
    return out, info


def prepare(image: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, LetterboxInfo]:
    """Decoded image -> network input ``(C, H, W) float32`` in [0, 1] and its letterbox info."""
    direct = _prepare_unscaled(image, spec)
    if direct is not None:
        return direct
    x = to_modality(image, spec.modality)
    x, info = letterbox(x, spec.input_size, spec.pad_value, spec.resize)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), info


def _prepare_unscaled(
    image: np.ndarray, spec: ModelSpec
) -> tuple[np.ndarray, LetterboxInfo] | None:
    """:func:`prepare` of an 8- or 16-bit false-colour (RGB or grayscale) image that needs no
    resizing, in one pass: the integers are scaled straight into the padded ``(C, H, W)``
    input, the same float32 operation as :func:`to_unit_float`, so the result is identical
    (the general path makes three full-size float copies: conversion, padding, transpose).
    ``None`` when the image does not qualify."""
    if spec.modality != "false_color" or image.dtype not in (np.uint8, np.uint16):
        return None
    if image.ndim == 2:
        src = image[None]  # replicated to three channels by broadcasting
    elif image.ndim == 3 and image.shape[2] == 3:
        src = image.transpose(2, 0, 1)
    else:
        return None
    h, w = image.shape[:2]
    if h == 0 or w == 0 or fit_size(h, w, spec) != (w, h):
        return None
    th, tw = spec.input_size
    out = np.full((3, th, tw), spec.pad_value, np.float32)
    x0, y0 = (tw - w) // 2, (th - h) // 2
    scale = np.float32(1.0 / 255.0 if image.dtype == np.uint8 else 1.0 / 65535.0)
    np.multiply(src, scale, out=out[:, y0 : y0 + h, x0 : x0 + w], dtype=np.float32)
    return out, LetterboxInfo(1.0, 1.0, float(x0), float(y0), h, w)


def fit_size(h: int, w: int, spec: ModelSpec) -> tuple[int, int]:
    """``(width, height)`` in pixels an ``h x w`` image takes inside the network input, as
    :func:`letterbox` computes it for ``spec.resize``."""
    th, tw = spec.input_size
    if spec.resize == "stretch":
        return tw, th
    s = min(tw / w, th / h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def prepare_fast(
    image: np.ndarray, spec: ModelSpec, orig_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, LetterboxInfo]:
    """:func:`prepare` for a scan, shrinking large integer images before the float conversion.

    ``prepare`` converts the full-resolution scan to float32 and then resizes it; for a scan
    several times larger than the network input that conversion is most of the work.
    Resizing first (INTER_AREA, as ``letterbox`` uses when shrinking) on 16-bit integers
    gives the same input within 1e-5 (8-bit values are widened by 257 so no precision is
    lost) at a fraction of the cost.

    ``orig_hw``: the ``(height, width)`` in pixels of the original when ``image`` is a
    reduced decode of it (:func:`xscan.imageio.decode_image_scaled`). The fitted size is
    computed from the original, so padding and scale are those of the full-resolution path,
    and the returned :class:`LetterboxInfo` always maps input pixels to *original* pixels.
    """
    h, w = image.shape[:2]
    oh, ow = (h, w) if orig_hw is None else (int(orig_hw[0]), int(orig_hw[1]))
    reduced = (oh, ow) != (h, w)
    if spec.modality == "raw_dual" or image.dtype not in (np.uint8, np.uint16):
        if reduced:
            raise ValueError(f"prepare_fast: a reduced {image.dtype} image cannot be prepared")
        return prepare(image, spec)
    nw, nh = fit_size(oh, ow, spec)
    if not reduced and (nw * 2 > w or nh * 2 > h):  # not much larger than the input
        return prepare(image, spec)
    if (nw, nh) != (w, h):
        wide = image.astype(np.uint16) * np.uint16(257) if image.dtype == np.uint8 else image
        interp = cv2.INTER_AREA if (nw <= w and nh <= h) else cv2.INTER_LINEAR
        small = cv2.resize(wide, (nw, nh), interpolation=interp)
    else:
        small = image
    chw, info = prepare(small, spec)  # already at the fitted size: only padding is added
    info = dataclasses.replace(
        info, scale_x=info.scale_x * nw / ow, scale_y=info.scale_y * nh / oh, orig_h=oh, orig_w=ow
    )
    return chw, info


def decode_target(
    spec: ModelSpec, wants_tiling_hw: Callable[[int, int], bool] | None = None
) -> Callable[[int, int], tuple[int, int] | None]:
    """The ``min_size_hw`` function for :func:`xscan.imageio.decode_image_scaled`: from an
    original ``(height, width)`` in pixels, the ``(height, width)`` it takes inside the
    network input, or None (decode in full) for ``raw_dual`` models and for images that
    ``wants_tiling_hw(h, w)`` says will be tiled at native resolution."""

    def target(h: int, w: int) -> tuple[int, int] | None:
        if spec.modality == "raw_dual" or (wants_tiling_hw is not None and wants_tiling_hw(h, w)):
            return None
        nw, nh = fit_size(h, w, spec)
        return nh, nw

    return target


def scan_view(x: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0..7) of arrays ``(..., H, W)`` for ``spec.scan_views``: bit 0 mirrors
    left to right, bit 1 upside down, bit 2 then turns by 90 degrees (``np.rot90``, to
    ``(..., W, H)``). View 0 is ``x`` itself."""
    if k & 1:
        x = x[..., ::-1]
    if k & 2:
        x = x[..., ::-1, :]
    if k & 4:
        x = np.rot90(x, 1, axes=(-2, -1))
    return np.ascontiguousarray(x)


def scan_scores_from_views(view_scores: np.ndarray, score_threshold: float) -> np.ndarray:
    """Scan scores ``(B,)`` from each view's top score ``(B, V)`` (``spec.scan_views``): the
    mean over views, a view whose top score is below ``score_threshold`` counting 0."""
    vs = np.asarray(view_scores, np.float64)
    return np.where(vs >= score_threshold, vs, 0.0).mean(axis=1)


def boxes_from_view(boxes: np.ndarray, k: int, h: int, w: int) -> np.ndarray:
    """Boxes ``(..., 4)`` xyxy found in :func:`scan_view` ``k`` of an ``h x w`` input, in the
    input's own pixels."""
    b = np.array(boxes, np.float32, copy=True)
    if k & 4:  # np.rot90 takes input (x, y) to (y, w - x)
        x1, y1, x2, y2 = (b[..., i].copy() for i in range(4))
        b = np.stack([w - y2, x1, w - y1, x2], axis=-1)
    if k & 2:
        b[..., [1, 3]] = h - b[..., [3, 1]]
    if k & 1:
        b[..., [0, 2]] = w - b[..., [2, 0]]
    return b
