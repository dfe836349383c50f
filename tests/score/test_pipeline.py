from __future__ import annotations

import numpy as np
import pytest

from xscan.preprocess import prepare_fast
from xscan.runtime import load_model


@pytest.mark.parametrize(
    "shape,dtype",
    [((600, 800, 3), np.uint8), ((700, 500), np.uint16), ((300, 1000), np.uint8)],
)
def test_prepare_fast_matches_prepare_on_large_scans(toy_detector_onnx, shape, dtype):
    model = load_model(toy_detector_onnx)
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    ref_x, ref_info = model.prepare(image)
    x, info = prepare_fast(image, model.spec)
    assert info == ref_info
    assert x.shape == ref_x.shape and x.dtype == np.float32
    assert np.abs(x - ref_x).max() < 2e-5
    boxes = np.array([[3.0, 4.0, 40.0, 50.0]], np.float32)
    np.testing.assert_allclose(info.boxes_to_original(boxes), ref_info.boxes_to_original(boxes))
