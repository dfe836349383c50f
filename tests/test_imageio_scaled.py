"""Reduced (DCT-scaled) JPEG decoding in ``xscan.imageio``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from xscan.imageio import (
    ImageTooLargeError,
    decode_image,
    decode_image_scaled,
    read_image_scaled,
    reduction_factor,
)


def _scan(h: int = 1000, w: int = 1500, seed: int = 0) -> np.ndarray:
    """A scan-like BGR image: light background, darker rectangles."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 240, np.uint8)
    for _ in range(20):
        y, x = int(rng.integers(0, h - 100)), int(rng.integers(0, w - 100))
        img[y : y + 90, x : x + 90] = rng.integers(20, 200, 3)
    return img


def _enc(img: np.ndarray, ext: str = ".jpg") -> bytes:
    return cv2.imencode(ext, img)[1].tobytes()


@pytest.mark.parametrize(
    "orig,target,margin,want",
    [
        ((1000, 1500), (171, 256), 2.0, 2),  # 500x750 >= 2x; 250x375 is not
        ((4000, 6000), (171, 256), 2.0, 8),
        ((1000, 1500), (171, 256), 1.0, 4),
        ((600, 800), (192, 256), 2.0, 1),  # 300x400 < 2x the target
        ((513, 513), (128, 128), 2.0, 2),  # ceil(513 / 2) = 257 >= 256
    ],
)
def test_reduction_factor(orig, target, margin, want):
    assert reduction_factor(orig, target, margin) == want


def test_jpeg_is_decoded_reduced_and_reports_the_original_size():
    img = _scan()
    data = _enc(img)
    s = decode_image_scaled(data, min_size_hw=(171, 256))
    assert (s.factor, s.orig_h, s.orig_w) == (2, 1000, 1500)
    assert s.image.shape == (500, 750, 3) and s.image.dtype == np.uint8
    # RGB like decode_image, and close to a full decode shrunk by area averaging.
    full = decode_image(data)
    ref = cv2.resize(full, (750, 500), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(s.image.astype(np.float32) - ref).mean() < 2.0


def test_odd_sizes_round_up_like_libjpeg():
    s = decode_image_scaled(_enc(_scan(1001, 1501)), min_size_hw=(100, 100))
    assert s.factor == 4 and s.image.shape[:2] == (251, 376)
    assert (s.orig_h, s.orig_w) == (1001, 1501)


def test_gray_jpeg_stays_single_channel():
    data = _enc(_scan()[:, :, 0])
    s = decode_image_scaled(data, min_size_hw=(100, 150))
    assert s.factor == 4 and s.image.shape == (250, 375)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff"])
def test_other_formats_are_decoded_in_full(ext):
    """OpenCV would shrink PNGs too (by resampling after a full decode, no saving): only
    JPEGs, recognised by their bytes, are decoded reduced."""
    data = _enc(_scan(), ext)
    s = decode_image_scaled(data, "x.jpg", min_size_hw=(100, 150))
    assert s.factor == 1 and s.image.shape == (1000, 1500, 3)
    np.testing.assert_array_equal(s.image, decode_image(data))


def test_sixteen_bit_png_is_decoded_in_full():
    img = (np.arange(1000 * 1500, dtype=np.uint32) % 65536).astype(np.uint16).reshape(1000, 1500)
    s = decode_image_scaled(_enc(img, ".png"), min_size_hw=(100, 150))
    assert s.factor == 1 and s.image.dtype == np.uint16 and s.image.shape == (1000, 1500)


def test_no_target_or_no_margin_means_full_decode():
    data = _enc(_scan())
    assert decode_image_scaled(data).factor == 1
    assert decode_image_scaled(data, min_size_hw=(100, 150), margin=0).factor == 1
    seen = []

    def tiled(h, w):
        seen.append((h, w))
        return None  # e.g. the image will be tiled at native resolution

    s = decode_image_scaled(data, min_size_hw=tiled)
    assert s.factor == 1 and s.image.shape == (1000, 1500, 3) and seen == [(1000, 1500)]
    s = decode_image_scaled(data, min_size_hw=lambda h, w: (h // 10, w // 10))
    assert s.factor == 4


def test_pixel_guard_uses_the_header_size_before_decoding():
    data = _enc(_scan())
    with pytest.raises(ImageTooLargeError, match="1500x1000 pixels exceeds the limit"):
        decode_image_scaled(data, "big.jpg", max_pixels=1_000_000, min_size_hw=(100, 150))
    with pytest.raises(ImageTooLargeError):
        decode_image_scaled(data, "big.jpg", max_pixels=1_000_000)


def test_read_image_scaled_names_the_file(tmp_path):
    p = tmp_path / "scan.jpeg"
    p.write_bytes(_enc(_scan()))
    s = read_image_scaled(p, min_size_hw=(171, 256))
    assert s.factor == 2 and (s.orig_h, s.orig_w) == (1000, 1500)
    with pytest.raises(ValueError, match="missing.jpg: file not found"):
        read_image_scaled(tmp_path / "missing.jpg", min_size_hw=(171, 256))
