from __future__ import annotations

import numpy as np

from xscan.runtime import load_model
from xscan.runtime.tiling import Tile, merge_tile_detections, should_tile, stitch_maps, tile_grid


def _scan(h, w, rect):
    img = np.full((h, w, 3), 230, np.uint8)
    x0, y0, x1, y1 = rect
    img[y0:y1, x0:x1] = 20
    return img


def test_tile_grid_covers_with_overlap():
    tiles = tile_grid(64, 200, (64, 64), 0.25)
    assert [(t.x0, t.x1) for t in tiles] == [(0, 64), (45, 109), (91, 155), (136, 200)]
    for a, b in zip(tiles, tiles[1:], strict=False):
        assert a.x1 - b.x0 >= 16  # at least 25 % of the tile
    assert tile_grid(30, 40, (64, 64), 0.25) == [Tile(0, 0, 30, 40)]
    assert should_tile(1000, 2000, (320, 320)) and not should_tile(500, 600, (320, 320))


def test_box_straddling_two_tiles_is_merged(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1, tiling="always")
    rect = (80, 20, 130, 40)  # cut by tile 1's right border and tile 2's left border
    p = det.predict(_scan(64, 200, rect))
    assert p.tiles == 4
    assert p.num_detections == 1
    np.testing.assert_allclose(p.boxes[0], rect, atol=1.0)


def test_box_spanning_four_tiles_is_merged(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1, tiling="always")
    rect = (30, 10, 170, 50)
    p = det.predict(_scan(64, 200, rect))
    assert p.num_detections == 1
    np.testing.assert_allclose(p.boxes[0], rect, atol=1.0)


def test_box_seen_whole_and_cut_is_one(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1, tiling="always")
    rect = (95, 5, 105, 30)  # whole in tiles 1 and 2 (overlap 91..109): a duplicate
    p = det.predict(_scan(64, 200, rect))
    assert p.num_detections == 1
    np.testing.assert_allclose(p.boxes[0], rect, atol=1.0)


def test_separate_objects_stay_separate(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1, tiling="always")
    img = _scan(64, 200, (5, 5, 30, 30))
    img[10:40, 160:190] = 20
    p = det.predict(img)
    assert p.num_detections == 2
    np.testing.assert_allclose(sorted(p.boxes.tolist()), [[5, 5, 30, 30], [160, 10, 190, 40]])


def test_two_dimensional_grid_and_auto_policy(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1)  # auto: 200x300 shrinks >2x into 64x64
    rect = (100, 40, 180, 110)  # crosses vertical and horizontal borders
    p = det.predict(_scan(200, 300, rect))
    assert p.tiles > 4 and p.num_detections == 1
    np.testing.assert_allclose(p.boxes[0], rect, atol=1.0)
    small = det.predict(_scan(64, 100, (10, 10, 20, 20)))
    assert small.tiles == 1


def test_merge_keeps_different_classes_apart():
    tiles = tile_grid(64, 200, (64, 64), 0.25)
    boxes = np.array([[40, 10, 64, 30], [45, 10, 80, 30]], np.float32)
    b, s, c = merge_tile_detections(
        boxes, np.array([0.9, 0.8]), np.array([0, 1]), np.array([0, 1]), tiles, (64, 200)
    )
    assert len(b) == 2 and sorted(c.tolist()) == [0, 1]


def test_stitched_map_has_no_seams():
    tiles = tile_grid(100, 300, (64, 64), 0.25)
    maps = [np.full((t.y1 - t.y0, t.x1 - t.x0), 0.7, np.float32) for t in tiles]
    out = stitch_maps(maps, tiles, (100, 300), 0.25)
    assert out.shape == (100, 300)
    np.testing.assert_allclose(out, 0.7, atol=1e-5)
    # A smooth ramp across the image stays smooth after cutting and stitching.
    yy, xx = np.mgrid[0:100, 0:300].astype(np.float32)
    ramp = xx / 300
    maps = [ramp[t.y0 : t.y1, t.x0 : t.x1] for t in tiles]
    np.testing.assert_allclose(stitch_maps(maps, tiles, (100, 300), 0.25), ramp, atol=1e-5)


def test_scaled_tiles_cover_more_and_still_merge(dark_box_onnx):
    det = load_model(dark_box_onnx, threads=1, tiling="always", tile_scale=2.0)
    rect = (100, 40, 300, 90)  # 128x128 windows at stride 96: cut by several borders
    p = det.predict(_scan(128, 400, rect))
    assert p.tiles == 4  # 400 px in 128-px windows; 128 high: one row
    assert p.num_detections == 1
    np.testing.assert_allclose(p.boxes[0], rect, atol=2.5)  # windows are halved on the way in


def test_tiling_policy_comes_from_the_spec(tmp_path):
    import numpy as np

    from toy_models import make_toy_detector, toy_detector_spec
    from xscan.runtime import load_model

    img = np.full((640, 640, 3), 200, np.uint8)  # 10x the 64 px toy input
    whole = make_toy_detector(
        tmp_path / "whole.onnx", toy_detector_spec().replace(tile_max_downscale=16.0)
    )
    tiled = make_toy_detector(tmp_path / "tiled.onnx", toy_detector_spec())
    assert not load_model(whole).wants_tiling(img)
    assert load_model(tiled).wants_tiling(img)
    # An explicit argument still overrides the spec.
    assert load_model(whole, max_downscale=2.0).wants_tiling(img)
