"""The one-pass preparation of integer false-colour images equals the general path."""

from __future__ import annotations

import numpy as np
import pytest

from xscan.preprocess import letterbox, prepare, to_modality
from xscan.spec import ModelSpec


def _general(image: np.ndarray, spec: ModelSpec):
    """The reference: unit float, letterbox, transpose (what training's preprocessing does)."""
    x = to_modality(image, spec.modality)
    x, info = letterbox(x, spec.input_size, spec.pad_value, spec.resize)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), info


def _spec(size_hw, **kw) -> ModelSpec:
    return ModelSpec(
        task="detect", class_names=("firearm",), input_size=size_hw, arch="centernet", **kw
    ).validate()


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((64, 96, 3), np.uint8),  # exactly the input size
        ((64, 96), np.uint8),  # grayscale, replicated to three channels
        ((64, 96, 3), np.uint16),
        ((40, 96, 3), np.uint8),  # fits without resizing: padded top and bottom
        ((64, 71, 3), np.uint16),  # padded left and right, odd margin
        ((57, 96), np.uint8),
        ((128, 192, 3), np.uint8),  # needs resizing: the general path
        ((64, 96, 4), np.uint8),  # four channels: the general path (an error there too)
    ],
)
@pytest.mark.parametrize("pad_value", [1.0, 0.0])
def test_prepare_equals_the_general_path(shape, dtype, pad_value):
    spec = _spec((64, 96), pad_value=pad_value)
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    try:
        expected = _general(image, spec)
    except ValueError as e:
        with pytest.raises(ValueError, match=str(e)[:30]):
            prepare(image, spec)
        return
    x, info = prepare(image, spec)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, expected[0])  # bit for bit, padding included
    assert info == expected[1]


def test_prepare_of_other_modalities_is_unchanged():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    spec = _spec((64, 96), modality="gray", mean=(0.5,), std=(0.25,))
    x, info = prepare(image, spec)
    ref, ref_info = _general(image, spec)
    assert x.shape == (1, 64, 96) and np.array_equal(x, ref) and info == ref_info
