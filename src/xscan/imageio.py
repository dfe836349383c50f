"""Reading scan images from files or bytes, with errors that name the file and the problem.

Numpy and OpenCV only (used by the torch-free runtime, the scorer, the service and the
dataset readers alike).

Returned arrays:
* 8-bit colour files -> ``(H, W, 3) uint8`` **RGB**
* 8-bit grayscale -> ``(H, W) uint8``; 16-bit grayscale -> ``(H, W) uint16``
* 16-bit colour -> ``(H, W, 3) uint16`` RGB
* raw dual-energy pair -> ``(H, W, 2) float32`` transmissions (low, high) in [0, 1]

:func:`decode_image_scaled` / :func:`read_image_scaled` may decode an 8-bit JPEG at 1/2, 1/4
or 1/8 of its size (libjpeg's DCT scaling, far cheaper than a full decode) when the caller
says how small the image will be shrunk anyway; they report the original size alongside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# A decompression-bomb guard: refuse images with more pixels than this unless told otherwise.
DEFAULT_MAX_PIXELS = 100_000_000


class ImageReadError(ValueError):
    """An image could not be read; the message names the source and the reason."""


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than allowed (a decompression-bomb guard)."""


_SOF_MARKERS = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)


def _sniff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG/JPEG/BMP header without decoding, or None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(
            int.from_bytes(data[22:26], "little", signed=True)
        )
    frame = _jpeg_frame(data)
    return None if frame is None else frame[:2]


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, components, bits per sample)`` from a JPEG's frame header (SOF), or
    None when the bytes are not a JPEG or the header cannot be found."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        seg = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            bits = data[i + 4]
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return w, h, data[i + 9], bits
        i += 2 + seg
    return None


def sniff_format(data: bytes) -> str | None:
    """Image format from magic bytes (never from a file name or a header the client sent)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def decode_image(
    data: bytes, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, BMP, TIFF; 8- or 16-bit; gray or colour)."""
    if not data:
        raise ImageReadError(f"{source}: empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageReadError(f"{source}: not a supported image (PNG, JPEG, BMP or TIFF expected)")
    size = _sniff_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLargeError(
            f"{source}: image of {size[0]}x{size[1]} pixels exceeds the limit of {max_pixels}"
        )
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageReadError(f"{source}: corrupt or truncated {fmt} image")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageTooLargeError(
            f"{source}: image of {img.shape[1]}x{img.shape[0]} pixels exceeds the limit "
            f"of {max_pixels}"
        )
    if img.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(img.dtype, np.floating):
            img = (np.clip(img, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
        else:
            raise ImageReadError(f"{source}: unsupported pixel type {img.dtype}")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        else:
            raise ImageReadError(f"{source}: unsupported channel count {img.shape[2]}")
    return np.ascontiguousarray(img)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: file not found") from e
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror})") from e


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file; see the module docstring for the returned layouts."""
    path = Path(path)
    return decode_image(_read_bytes(path), str(path), max_pixels=max_pixels)


# libjpeg's DCT scaling: decode at 1/f of the size for a fraction of the work.
_REDUCED_FLAGS = {
    (2, 3): cv2.IMREAD_REDUCED_COLOR_2,
    (4, 3): cv2.IMREAD_REDUCED_COLOR_4,
    (8, 3): cv2.IMREAD_REDUCED_COLOR_8,
    (2, 1): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, 1): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (8, 1): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
DEFAULT_REDUCE_MARGIN = 2.0
# A target size, or a function of the original (height, width) giving one (None: full decode).
MinSize = tuple[int, int] | Callable[[int, int], "tuple[int, int] | None"] | None


@dataclass(frozen=True)
class ScaledImage:
    """An image decoded at ``1 / factor`` of its size (``factor`` 1 = full resolution).

    ``image`` has the layout :func:`decode_image` returns, ``ceil(orig_h / factor) x
    ceil(orig_w / factor)`` pixels; ``orig_h`` / ``orig_w`` are the file's own size in pixels,
    the frame boxes must be reported in.
    """

    image: np.ndarray
    orig_h: int
    orig_w: int
    factor: int = 1


def reduction_factor(
    orig_hw: tuple[int, int], min_size_hw: tuple[int, int], margin: float = DEFAULT_REDUCE_MARGIN
) -> int:
    """The largest ``f`` in {2, 4, 8} such that an ``orig_hw`` image decoded at ``1 / f``
    (``ceil(H / f) x ceil(W / f)``) is still at least ``margin`` x ``min_size_hw`` on both
    axes, else 1. ``margin`` >= 1 keeps the final shrink an averaging (INTER_AREA) one."""
    h, w = orig_hw
    mh, mw = min_size_hw
    best = 1
    for f in (2, 4, 8):
        if -(-h // f) >= margin * mh and -(-w // f) >= margin * mw:
            best = f
    return best


def decode_image_scaled(
    data: bytes,
    source: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size_hw: MinSize = None,
    margin: float = DEFAULT_REDUCE_MARGIN,
) -> ScaledImage:
    """Decode image bytes, at reduced size when that loses nothing the caller keeps.

    ``min_size_hw``: the ``(height, width)`` in pixels the caller will shrink the image to
    (e.g. the letterboxed size inside a network input), or a function of the original
    ``(height, width)`` giving it (None from the function: decode in full, e.g. because the
    image will be tiled at native resolution). When given, an 8-bit gray or colour
    JPEG (recognised by its bytes, not a file name) whose frame header declares its size is
    decoded at ``1 / f`` of that size, ``f`` from :func:`reduction_factor`; every other image
    (PNG, BMP, TIFF, 12-bit or CMYK JPEG, a JPEG whose header cannot be read) is decoded in
    full, exactly as :func:`decode_image` does. The pixel-count guard applies to the
    header-declared full size before anything is decoded. EXIF orientation is ignored, as in
    :func:`decode_image`, so both paths see the same pixel grid.
    """
    frame = _jpeg_frame(data) if min_size_hw is not None and margin > 0 else None
    if frame is None or sniff_format(data) != "jpeg":
        img = decode_image(data, source, max_pixels=max_pixels)
        return ScaledImage(img, int(img.shape[0]), int(img.shape[1]), 1)
    w, h, comps, bits = frame
    if w <= 0 or h <= 0 or comps not in (1, 3) or bits != 8:
        img = decode_image(data, source, max_pixels=max_pixels)
        return ScaledImage(img, int(img.shape[0]), int(img.shape[1]), 1)
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{source}: image of {w}x{h} pixels exceeds the limit of {max_pixels}"
        )
    target = min_size_hw(h, w) if callable(min_size_hw) else min_size_hw
    f = 1 if target is None else reduction_factor((h, w), target, margin)
    if f == 1:
        img = decode_image(data, source, max_pixels=max_pixels)
        return ScaledImage(img, int(img.shape[0]), int(img.shape[1]), 1)
    flags = _REDUCED_FLAGS[(f, comps)] | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None or img.size == 0:
        raise ImageReadError(f"{source}: corrupt or truncated jpeg image")
    if img.shape[:2] != (-(-h // f), -(-w // f)):
        raise ImageReadError(
            f"{source}: JPEG header declares {w}x{h} pixels but the 1/{f} decode gave "
            f"{img.shape[1]}x{img.shape[0]}"
        )
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return ScaledImage(np.ascontiguousarray(img), h, w, f)


def read_image_scaled(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size_hw: MinSize = None,
    margin: float = DEFAULT_REDUCE_MARGIN,
) -> ScaledImage:
    """Read an image file, reduced in decoding when possible; see :func:`decode_image_scaled`."""
    path = Path(path)
    return decode_image_scaled(
        _read_bytes(path), str(path), max_pixels=max_pixels, min_size_hw=min_size_hw, margin=margin
    )


def to_transmission(img: np.ndarray) -> np.ndarray:
    """Scale an 8- or 16-bit single-channel image to float32 transmission in [0, 1]."""
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def read_raw_pair(low: str | Path, high: str | Path) -> np.ndarray:
    """Read a raw dual-energy pair (16-bit transmission images) as ``(H, W, 2) float32``."""
    lo, hi = read_image(low), read_image(high)
    for p, im in ((low, lo), (high, hi)):
        if im.ndim != 2:
            raise ImageReadError(
                f"{p}: a raw energy channel must be single-channel, got {im.shape}"
            )
    if lo.shape != hi.shape:
        raise ImageReadError(
            f"{low} / {high}: low and high images differ in size {lo.shape} vs {hi.shape}"
        )
    return np.stack([to_transmission(lo), to_transmission(hi)], axis=-1)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (PNG/JPEG/BMP), decoding only
    when the header cannot tell (TIFF, unusual JPEGs). Errors name the file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: file not found") from e
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror})") from e
    if sniff_format(head) is None:
        raise ImageReadError(f"{path}: not a supported image (PNG, JPEG, BMP or TIFF expected)")
    size = _sniff_size(head)
    if size is None or size[0] <= 0 or size[1] <= 0:
        img = read_image(path)
        return int(img.shape[1]), int(img.shape[0])
    return size
