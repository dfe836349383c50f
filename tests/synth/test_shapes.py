"""Shapes rasterise to the right path lengths; placement keeps volume; scenes annotate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xscan.synth.scene import CLUTTER_SD_FLOOR, Scene, occlusion_level
from xscan.synth.shapes import LocalShape, place

PC = 0.1  # cm per pixel


def test_primitive_path_lengths_at_centre():
    s = LocalShape(12, 12, PC)
    s.box("steel", 0, 0, 4, 2, 0.5)
    s.cylinder("water", 0, 0, 8, 3.0)
    s.ellipsoid("cotton", 0, 0, 5, 4, 1.5)
    s.disc("copper", 0, 0, 1.0, 0.2)
    c = (s.h // 2, s.w // 2)
    assert s.layers["steel"][c] == pytest.approx(0.5)
    assert s.layers["water"][c] == pytest.approx(6.0, rel=1e-3)  # chord = 2r
    assert s.layers["cotton"][c] == pytest.approx(3.0, rel=1e-3)  # 2c
    assert s.layers["copper"][c] == pytest.approx(0.2)
    # the cylinder's chord falls off as 2·sqrt(r² - y²)
    row = c[0] + 20
    y = (row - s.cy) * PC  # about 2 cm off axis
    assert s.layers["water"][row, c[1]] == pytest.approx(2 * math.sqrt(9 - y * y), rel=1e-3)


def test_volume_kept_by_rotation_and_tilt():
    s = LocalShape(10, 6, PC)
    s.box("steel", 0, 0, 8, 3, 0.3)
    s.polygon("nylon", np.array([[-4, -2.5], [4, -2.5], [0, 2.5]]), 1.0)
    ref = {k: v.sum() for k, v in s.layers.items()}
    for angle, tilt in ((0, 0), (33, 0), (90, 40), (217, 60)):
        p = place(s, (200.3, 150.7), angle, tilt)
        for k, v in p.layers.items():
            assert v.sum() == pytest.approx(ref[k], rel=0.03), (k, angle, tilt)


def test_tilt_foreshortens_the_outline():
    s = LocalShape(10, 6, PC)
    s.box("steel", 0, 0, 8, 4, 0.3)
    flat = place(s, (100, 100), 0.0, 1e-9).mask()
    tilted = place(s, (100, 100), 0.0, 60.0).mask()
    rows_flat = np.flatnonzero(flat.any(1)).size
    rows_tilted = np.flatnonzero(tilted.any(1)).size
    assert rows_tilted == pytest.approx(rows_flat * 0.5, abs=3)
    assert np.flatnonzero(tilted.any(0)).size == np.flatnonzero(flat.any(0)).size


def _scene_with_knife_under(cover_mat: str | None):
    scene = Scene(64, 64, PC)
    knife = LocalShape(3, 1, PC)
    knife.box("steel", 0, 0, 2.5, 0.6, 0.2)
    scene.add(place(knife, (30, 30)), category="knife", is_threat=True)
    if cover_mat:
        plate = LocalShape(2, 3, PC)
        plate.box(cover_mat, 0, 0, 1.6, 2.0, 2.0)  # covers the left part of the knife
        scene.add(place(plate, (22, 30)))
    return scene


def test_occlusion_counts_dense_material_only():
    mu = {"steel": 2.0, "cotton": 0.05}
    clear = _scene_with_knife_under(None).annotate(mu)[0]
    light = _scene_with_knife_under("cotton").annotate(mu)[0]
    dense = _scene_with_knife_under("steel").annotate(mu)[0]
    assert clear.occlusion == 0.0 and clear.occlusion_level == 0
    assert light.occlusion == 0.0
    assert 0.45 < dense.occlusion < 0.8
    assert dense.occlusion_level == occlusion_level(dense.occlusion) >= 2


def _packet_in_clutter(material: str, thickness: float, clutter: bool):
    scene = Scene(64, 64, PC)
    packet = LocalShape(3, 3, PC)
    packet.box(material, 0, 0, 2.0, 2.0, thickness)
    scene.add(place(packet, (32, 32)), category="drugs_like", is_threat=True)
    if clutter:  # stripes of cotton, 0.5 and 3 cm thick, across the packet
        for i, t in enumerate((0.5, 3.0, 0.5, 3.0)):
            stripe = LocalShape(4, 0.5, PC)
            stripe.box("cotton", 0, 0, 4, 0.5, t)
            scene.add(place(stripe, (32, 24.5 + 5 * i)))
    return scene


def test_conspicuity_is_own_attenuation_over_clutter_spread():
    mu = {"steel": 2.0, "cocaine": 0.2, "cotton": 0.2}
    on_air = _packet_in_clutter("steel", 0.2, clutter=False).annotate(mu)[0]
    # no clutter: own -ln T (0.2 cm x 2.0 per cm, a little less at the soft edges) over the floor
    assert on_air.conspicuity == pytest.approx(0.4 / CLUTTER_SD_FLOOR, rel=0.1)
    steel = _packet_in_clutter("steel", 0.2, clutter=True).annotate(mu)[0]
    powder = _packet_in_clutter("cocaine", 0.5, clutter=True).annotate(mu)[0]
    # clutter spread: cotton stripes of 0.1 and 0.6 -ln T over the packet, sd about 0.25
    assert steel.conspicuity == pytest.approx(0.4 / 0.25, rel=0.25)
    assert powder.conspicuity == pytest.approx(0.1 / 0.25, rel=0.25)
    assert powder.conspicuity < 1 < steel.conspicuity < on_air.conspicuity


def test_box_is_tight_bounds_of_clipped_mask():
    scene = Scene(40, 50, PC)
    s = LocalShape(3, 2, PC)
    s.box("steel", 0, 0, 3, 2, 0.2)
    scene.add(place(s, (48, 5)), category="wrench", is_threat=True)  # half outside
    (obj,) = scene.annotate({"steel": 2.0})
    rows, cols = np.flatnonzero(obj.mask.any(1)), np.flatnonzero(obj.mask.any(0))
    assert obj.box == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    assert obj.box[2] <= 50 and obj.box[0] >= 0 and obj.box[1] >= 0
    assert obj.area == obj.mask.sum()


def test_objects_out_of_view_are_dropped():
    scene = Scene(40, 40, PC)
    s = LocalShape(1, 1, PC)
    s.box("steel", 0, 0, 1, 1, 0.2)
    scene.add(place(s, (80, 80)), category="knife", is_threat=True)
    scene.add(place(s, (44.2, 20)), category="knife", is_threat=True)  # a sliver in view
    assert scene.annotate({"steel": 2.0}) == []


def test_drawing_rotated_matches_rotating_the_upright_drawing():
    def draw(shape: LocalShape) -> LocalShape:
        shape.box("steel", 1.0, -0.5, 4.0, 1.5, 0.3)
        shape.cylinder("aluminium", -1.0, 1.0, 6.0, 0.8, 0.6)
        shape.disc("copper", 2.0, 1.5, 0.7, 0.2)
        shape.ellipsoid("cotton", -2.0, -1.0, 1.5, 1.0, 0.8)
        shape.wire("pvc", np.array([[-3.0, 2.0], [3.0, 2.5]]), 0.3)
        return shape

    upright = place(draw(LocalShape(9, 7, PC)), (100.0, 100.0), 37.0)
    direct = place(draw(LocalShape(9, 7, PC, angle_deg=37.0)), (100.0, 100.0))
    for name, arr in upright.layers.items():
        assert direct.layers[name].sum() == pytest.approx(arr.sum(), rel=0.03), name
    # the same pixels are covered (up to a pixel of resampling at the borders)
    a, b = upright.mask(), direct.mask()
    full = np.zeros((200, 200), bool)
    full[upright.y0 : upright.y0 + upright.h, upright.x0 : upright.x0 + upright.w] = a
    other = np.zeros((200, 200), bool)
    other[direct.y0 : direct.y0 + direct.h, direct.x0 : direct.x0 + direct.w] = b
    assert (full ^ other).sum() / full.sum() < 0.15


def test_batched_primitives_accept_empty_batches_and_draw_each_item():
    s = LocalShape(10, 10, PC)
    s.polygons("steel", [], 0.2)
    s.wires("copper", [], 0.1)
    s.discs("brass", np.zeros((0, 2)), np.zeros(0), 0.2)
    assert all(v.sum() == 0 for v in s.layers.values())
    s.discs("brass", np.array([[-3.0, 0.0], [3.0, 0.0]]), 0.5, 0.2)
    area_cm2 = s.layers["brass"].sum() * PC * PC / 0.2
    assert area_cm2 == pytest.approx(2 * math.pi * 0.25, rel=0.05)  # two discs of r = 0.5 cm
