"""Reading scan images from files or bytes, with errors that name the file and the problem.

Numpy and OpenCV only (used by the torch-free runtime, the scorer, the service and the
dataset readers alike).

Returned arrays:
* 8-bit colour files -> ``(H, W, 3) uint8`` **RGB**
* 8-bit grayscale -> ``(H, W) uint8``; 16-bit grayscale -> ``(H, W) uint16``
* 16-bit colour -> ``(H, W, 3) uint16`` RGB
* raw dual-energy pair -> ``(H, W, 2) float32`` transmissions (low, high) in [0, 1]
"""

from __future__ import annotations

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
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            seg = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in _SOF_MARKERS:
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
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


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file; see the module docstring for the returned layouts."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: file not found") from e
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror})") from e
    return decode_image(data, str(path), max_pixels=max_pixels)


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
