"""generate_scan and write_dataset: determinism, annotation validity, threat share, COCO."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from xscan.synth.coco import BAGGAGE_CATEGORIES, CARGO_CATEGORIES, decode_rle
from xscan.synth.generator import (
    SynthOptions,
    generate_scan,
    plan_dataset,
    render_threat_patch,
    write_dataset,
)

SIZE = (128, 128)


def _check_objects(scan) -> None:
    h, w = scan.rgb.shape[:2]
    for o in scan.objects:
        x0, y0, x1, y1 = o.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        rows, cols = np.flatnonzero(o.mask.any(1)), np.flatnonzero(o.mask.any(0))
        assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert 0.0 <= o.occlusion <= 1.0 and o.occlusion_level in (0, 1, 2, 3)


@pytest.mark.parametrize("kind,size", [("baggage", SIZE), ("cargo", (96, 192))])
def test_generate_scan_is_deterministic_and_valid(kind, size):
    a = generate_scan(kind, size, 7, SynthOptions(with_threat=True))
    b = generate_scan(kind, size, 7, SynthOptions(with_threat=True))
    assert a.rgb.shape == (*size, 3) and a.rgb.dtype == np.uint8
    assert a.t_low.dtype == np.float32 and a.t_low.shape == size
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.t_high, b.t_high)
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    assert a.has_threat and any(o.is_threat for o in a.objects)
    assert 0 < a.t_low.min() and a.t_high.max() <= 1.0
    cats = BAGGAGE_CATEGORIES if kind == "baggage" else CARGO_CATEGORIES
    assert all(o.category in cats for o in a.objects)
    _check_objects(a)
    c = generate_scan(kind, size, 8, SynthOptions(with_threat=True))
    assert not np.array_equal(a.rgb, c.rgb)


def test_clear_scans_have_no_threat_and_bags_look_like_scans():
    scans = [generate_scan("baggage", SIZE, s, SynthOptions(with_threat=False)) for s in range(3)]
    for s in scans:
        assert not s.has_threat and not any(o.is_threat for o in s.objects)
        _check_objects(s)
        # white background around the bag, and dense material inside it
        assert (s.rgb.min(-1) > 200).mean() > 0.15
        assert (s.t_high < 0.8).mean() > 0.1


def test_plan_gives_exact_threat_share_and_distinct_seeds():
    for frac, n, expect in ((0.5, 10, 5), (0.0, 6, 0), (1.0, 5, 5), (0.25, 8, 2)):
        plan = plan_dataset("baggage", n, SIZE, 3, SynthOptions(threat_fraction=frac))
        assert sum(plan.threats) == expect
        assert len(set(plan.seeds)) == n
    assert (
        plan_dataset("baggage", 8, SIZE, 3, SynthOptions()).seeds
        == plan_dataset("baggage", 8, SIZE, 3, SynthOptions()).seeds
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n": -1}, "positive"),
        ({"n": 0}, "positive"),
        ({"kind": "truck"}, "kind"),
        ({"size_hw": (8, 8)}, "size"),
        ({"seed": -3}, "seed"),
        ({"options": SynthOptions(threat_fraction=1.5)}, "threat fraction"),
        ({"options": SynthOptions(clutter="extreme")}, "clutter"),
    ],
)
def test_plan_rejects_bad_arguments(kwargs, match):
    args = {"kind": "baggage", "n": 4, "size_hw": SIZE, "seed": 0, "options": SynthOptions()}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plan_dataset(**args)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "one"
    write_dataset(out, "baggage", 4, SIZE, 11, workers=1, options=SynthOptions(threat_fraction=0.5))
    return out


def test_dataset_bytes_do_not_depend_on_workers(dataset, tmp_path):
    other = tmp_path / "two"
    write_dataset(
        other, "baggage", 4, SIZE, 11, workers=2, options=SynthOptions(threat_fraction=0.5)
    )
    a, b = _digest(dataset), _digest(other)
    assert len(a) == 4 * 3 + 2
    assert a == b


def test_dataset_coco_loads_and_masks_agree_with_boxes(dataset):
    from pycocotools.coco import COCO

    coco = COCO(str(dataset / "annotations.json"))
    assert len(coco.getImgIds()) == 4
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["seed"] == 11 and len(manifest["images"]) == 4
    assert sum(im["has_threat"] for im in manifest["images"]) == 2
    for img in coco.loadImgs(coco.getImgIds()):
        assert (dataset / "images" / img["file_name"]).is_file()
        assert (dataset / img["raw_low"]).is_file() and (dataset / img["raw_high"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert img["has_threat"] == any(a["is_threat"] for a in anns)
        for a in anns:
            m = decode_rle(a["segmentation"])
            assert m.shape == (img["height"], img["width"])
            ys, xs = np.nonzero(m)
            x, y, w, h = a["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert a["area"] == m.sum() and a["material"] and 0 <= a["occlusion_level"] <= 3
            assert np.isfinite(a["conspicuity"]) and a["conspicuity"] > 0
            assert coco.annToMask(a).sum() == m.sum()


def test_raw_images_are_16_bit_transmissions(dataset):
    import cv2

    low = cv2.imread(str(dataset / "raw" / "baggage_000000_low.png"), cv2.IMREAD_UNCHANGED)
    assert low.dtype == np.uint16 and low.shape == SIZE
    assert low.max() > 60000 and low.min() < 40000


def test_threat_free_share_follows_option(tmp_path):
    m = write_dataset(
        tmp_path / "d", "baggage", 5, (96, 96), 2, options=SynthOptions(threat_fraction=0.2)
    )
    assert [im["has_threat"] for im in m["images"]].count(False) == 4


def test_render_threat_patch_is_one_outside_the_object():
    low, high, mask = render_threat_patch("knife", 5, "baggage")
    assert low.shape == high.shape == mask.shape and mask.any()
    assert np.all(low[~mask] == 1.0) and low[mask].min() < 0.9
    assert np.all(high <= 1.0)
    with pytest.raises(ValueError, match="unknown threat"):
        render_threat_patch("banana", 0)


def test_threat_patch_projects_into_a_clear_scan():
    from xscan.synth.tip import project_raw

    scan = generate_scan("baggage", (160, 160), 3, SynthOptions(with_threat=False))
    low, high, mask = render_threat_patch("firearm", 1, "baggage", pixel_cm=scan.pixel_cm)
    x, y = 20, 30
    new_low, new_high = project_raw(scan.t_low, scan.t_high, low, high, x, y)
    h, w = low.shape
    region = (slice(y, y + h), slice(x, x + w))
    expect = scan.t_high[region] * high[: 160 - y, : 160 - x]
    assert np.allclose(new_high[region], expect, rtol=1e-5, atol=1e-7)
    assert np.array_equal(
        new_low[~_pad(mask, (160, 160), x, y)], scan.t_low[~_pad(mask, (160, 160), x, y)]
    )


def _pad(mask: np.ndarray, shape: tuple[int, int], x: int, y: int) -> np.ndarray:
    out = np.zeros(shape, bool)
    h, w = min(mask.shape[0], shape[0] - y), min(mask.shape[1], shape[1] - x)
    out[y : y + h, x : x + w] = mask[:h, :w]
    return out


def test_threats_per_scan_sets_the_number_of_placed_threats():
    # The default draw (1-3, mostly 1) is untouched by the option's existence.
    default = [generate_scan("baggage", SIZE, s, SynthOptions(with_threat=True)) for s in range(8)]
    again = [
        generate_scan("baggage", SIZE, s, SynthOptions(with_threat=True, threats_per_scan=None))
        for s in range(8)
    ]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(default, again, strict=True))
    dense = [
        generate_scan("baggage", SIZE, s, SynthOptions(with_threat=True, threats_per_scan=(4, 4)))
        for s in range(8)
    ]
    n_default = [sum(o.is_threat for o in s.objects) for s in default]
    n_dense = [sum(o.is_threat for o in s.objects) for s in dense]
    # four placed per scan; a threat hidden past the occlusion threshold is not annotated
    assert all(1 <= n <= 4 for n in n_dense) and sum(n_dense) > sum(n_default)
    assert sum(n_dense) >= 0.75 * 4 * len(dense)
    for s in dense:
        _check_objects(s)


@pytest.mark.parametrize("bad", [(0, 2), (3, 2), (1, 9)])
def test_threats_per_scan_is_validated(bad):
    with pytest.raises(ValueError, match="threats per scan"):
        generate_scan("baggage", SIZE, 0, SynthOptions(threats_per_scan=bad))


def test_threats_per_scan_on_the_command_line_and_in_the_manifest(tmp_path, capsys):
    from xscan.cli import main

    out = tmp_path / "dense"
    assert main(["synth", "--n", "3", "--size", "96x96", "--threat-fraction", "1",
                 "--threats-per-scan", "2-3", "--out", str(out)]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arguments"]["threats_per_scan"] == "2-3"
    rc = main(["synth", "--n", "1", "--threats-per-scan", "two", "--out", str(tmp_path / "x")])
    assert rc != 0
    assert "--threats-per-scan: expected MIN-MAX such as 2-4, got 'two'" in capsys.readouterr().err
