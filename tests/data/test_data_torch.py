"""Torch datasets, augmentation, TIP and the source mixture."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch
from data_fixtures import make_pidray, make_xscan_folder, write_image
from torch.utils.data import DataLoader

from xscan.config import DataSource
from xscan.data import load_dataset
from xscan.data.augment import TransmissionGainNoise, build_augment
from xscan.data.mixture import build_dataset
from xscan.data.tip import ThreatLibrary, ThreatPatch, TipGenerator, list_backgrounds
from xscan.data.torch_dataset import DetectionDataset, collate_detections
from xscan.imageio import read_image
from xscan.preprocess import to_unit_float
from xscan.spec import ModelSpec

CLASSES = ("firearm", "knife", "handcuffs")


def _spec(size=(64, 64), classes=CLASSES, modality="false_color"):
    mean = (0.5,) * (1 if modality == "gray" else 3)
    return ModelSpec(
        task="detect",
        class_names=classes,
        input_size=size,
        arch="test",
        modality=modality,
        mean=mean,
        std=tuple(0.25 for _ in mean),
    )


def _check_item(image, target, spec):
    c = spec.in_channels
    h, w = spec.input_size
    assert image.shape == (c, h, w) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    b = target["boxes"]
    assert b.dtype == torch.float32 and b.shape[1] == 4
    assert target["labels"].dtype == torch.int64 and len(target["labels"]) == len(b)
    if len(b):
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all()
        assert (b[:, 3] <= h).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert int(target["labels"].min()) >= 0
        assert int(target["labels"].max()) < len(spec.class_names)


def _mask_box(m):
    ys, xs = np.nonzero(m)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_detection_dataset_items_and_letterbox(tmp_path):
    col = load_dataset("pidray", make_pidray(tmp_path / "p"))
    spec = _spec(size=(96, 64), classes=("handcuffs", "firearm"))
    ds = DetectionDataset(col, spec)
    assert ds.dropped_objects == {"knife": 3}  # not in the model's classes: dropped, counted
    image, t = ds[0]
    _check_item(image, t, spec)
    assert t["orig_size"] == (48, 64) and t["letterbox"] == (1.0, 1.0, 0.0, 24.0)
    # firearm box (10, 10, 30, 30) -> shifted down by the 24 px letterbox pad
    assert t["labels"].tolist() == [1, 0]
    assert t["boxes"][0].tolist() == [10.0, 34.0, 30.0, 54.0]
    images, targets = collate_detections([ds[i] for i in range(len(ds))])
    assert images.shape == (len(ds), 3, 96, 64) and len(targets) == len(ds)


def test_gray_and_raw_dual_modalities(tmp_path):
    col = load_dataset("xscan", make_xscan_folder(tmp_path / "s"))
    g = _spec(modality="gray", classes=("knife",))
    image, t = DetectionDataset(col, g)[0]
    _check_item(image, t, g)
    raw = _spec(modality="raw_dual", classes=("knife",))
    image, t = DetectionDataset(col, raw)[0]
    _check_item(image, t, raw)
    # low-energy transmission channel; rows 8..56 hold the 64x48 scan, the rest is air padding
    assert abs(float(image[0, 8:56].mean()) - 60000 / 65535) < 1e-3
    assert float(image[0, :8].min()) == 1.0


def test_augmentation_keeps_boxes_on_masks_and_is_seeded(tmp_path):
    col = load_dataset("xscan", make_xscan_folder(tmp_path / "s"))
    spec = _spec(size=(64, 64), classes=("knife",))
    aug = build_augment({"affine": 0.0, "hflip": 0.5, "vflip": 0.5, "rot90": 0.5}, spec, masks=True)
    ds = DetectionDataset(col, spec, aug, seed=3, return_masks=True)
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        image, t = ds[0]
        _check_item(image, t, spec)
        box, mask = t["boxes"][0].numpy(), t["masks"][0].numpy()
        np.testing.assert_allclose(box, _mask_box(mask), atol=1.0)
        seen.add(tuple(np.round(box)))
    assert len(seen) > 1  # the flips/rotations really moved the object
    # each transform draws independently (flips and turns are not all-or-nothing)
    plain = DetectionDataset(col, spec, build_augment({"affine": 0.0}, spec), seed=0)
    outcomes = set()
    for epoch in range(40):
        plain.set_epoch(epoch)
        outcomes.add(tuple(plain[0][1]["boxes"][0].tolist()))
    assert len(outcomes) >= 6  # of the 8 flip/rotation combinations
    # scale/shift: boxes follow the masks within interpolation error
    aug2 = build_augment({"affine": 1.0, "scale": [0.7, 1.3]}, spec, masks=True)
    ds2 = DetectionDataset(col, spec, aug2, seed=5, return_masks=True)
    for epoch in range(4):
        ds2.set_epoch(epoch)
        _, t = ds2[0]
        if len(t["boxes"]):
            np.testing.assert_allclose(
                t["boxes"][0].numpy(), _mask_box(t["masks"][0].numpy()), atol=2.5
            )
    # determinism per (seed, epoch, index), also after pickling into a worker
    ds.set_epoch(2)
    a, ta = ds[0]
    b, tb = pickle.loads(pickle.dumps(ds))[0]
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])


def test_training_crops_hold_an_object_and_keep_its_mask(tmp_path):
    col = load_dataset("xscan", make_xscan_folder(tmp_path / "s"))
    spec = _spec(size=(64, 64), classes=("knife",))
    aug = build_augment({"crop": [32, 32], "affine": 0.0}, spec, masks=True)
    ds = DetectionDataset(col, spec, aug, seed=1, return_masks=True)
    where = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        image, t = ds[0]
        assert image.shape == (3, 32, 32)
        # the scan's one object (16 x 12 px, turned by rot90 at times) lies whole inside
        # every crop, on its mask
        assert t["labels"].tolist() == [0]
        box = t["boxes"][0].numpy()
        np.testing.assert_allclose(sorted(box[2:] - box[:2]), [12, 16], atol=1e-3)
        np.testing.assert_allclose(box, _mask_box(t["masks"][0].numpy()), atol=1.0)
        where.add(tuple(np.round(box)))
    assert len(where) > 1  # the crop window moves around the object
    images, _ = collate_detections([ds[0], ds[0]])
    assert images.shape == (2, 3, 32, 32)
    for bad in ([80, 32], [32], "32"):
        with pytest.raises(ValueError, match="data.augment.crop"):
            build_augment({"crop": bad}, spec)


def test_transmission_gain_keeps_channel_ratio_and_air():
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.9, (16, 16, 3)).astype(np.float32)
    img[0, 0] = 1.0  # air stays air
    t = TransmissionGainNoise(gain=(1.5, 1.5), gain_p=1.0, noise_p=0.0)
    out = t.apply(img, gain=1.5)
    ratio_in = np.log(img[1:, :, 0]) / np.log(img[1:, :, 2])
    ratio_out = np.log(out[1:, :, 0]) / np.log(out[1:, :, 2])
    np.testing.assert_allclose(ratio_out, ratio_in, rtol=1e-4)  # material signature unchanged
    assert out[0, 0].tolist() == [1.0, 1.0, 1.0] and (out[1:] < img[1:]).all()
    noisy = t.apply(img, gain=1.0, photons=1000.0, noise_seed=1)
    assert 0.0 < np.abs(noisy - img).mean() < 0.05
    with pytest.raises(ValueError, match="data.augment: unknown key"):
        build_augment({"hue": 0.1}, _spec())


def test_tip_projects_threats_with_boxes_and_masks(tmp_path):
    col = load_dataset("pidray", make_pidray(tmp_path / "p"))
    lib = ThreatLibrary.from_records(col.records, labels=["firearm", "knife"])
    assert len(lib) == 4 and lib.patches[0].mask.sum() == 400  # the polygon mask, 20x20
    for i in range(3):
        write_image(tmp_path / "bg" / f"N{i}.jpg", w=120, h=90, seed=i)
    write_image(tmp_path / "bg" / "P0.jpg", w=120, h=90, seed=9)
    bgs = list_backgrounds(tmp_path / "bg", "N*.jpg")
    assert len(bgs) == 3
    # a threat of known transmission 0.5 in a disc: projection multiplies transmissions
    yy, xx = np.mgrid[:21, :21]
    disc = (yy - 10) ** 2 + (xx - 10) ** 2 <= 100
    patch = ThreatPatch(np.where(disc[:, :, None], 0.5, 1.0).astype(np.float32), disc, "knife")
    gen = TipGenerator(
        bgs,
        ThreatLibrary([patch]),
        {
            "count": [2, 2],
            "size": [0.2, 0.2],
            "placement": "uniform",
            "rotate": False,
            "max_overlap": 0.0,
        },
    )
    s = gen.sample(7)
    assert s.labels == ["knife", "knife"] and s.is_threat
    bg = to_unit_float(read_image(s.path.split("tip:")[1].split("#")[0]))
    for box, mask in zip(s.boxes, s.masks, strict=True):
        np.testing.assert_array_equal(box, _mask_box(mask))
        assert box[2] - box[0] == 18  # 21 px disc resized to 0.2 * 90
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        np.testing.assert_allclose(s.image[inner], bg[inner] * 0.5, atol=1e-6)
        assert (s.image[mask] <= bg[mask] + 1e-6).all()  # rim pixels are partly covered
    untouched = ~(s.masks[0] | s.masks[1])
    np.testing.assert_array_equal(s.image[untouched], bg[untouched])
    np.testing.assert_array_equal(gen.sample(7).image, s.image)  # seeded
    small = TipGenerator(bgs, ThreatLibrary([patch]), {"max_side": 60, "count": [1, 1]}).sample(3)
    assert small.image.shape[:2] == (45, 60) and small.boxes[0][2] <= 60
    with pytest.raises(ValueError, match="unknown key"):
        TipGenerator(bgs, lib, {"colour": 1})


def test_tip_into_gray_scans_stored_as_rgb_stays_gray(tmp_path):
    """GDXray's crops are grayscale saved as RGB JPEG: a rendered threat goes in through its
    high-energy transmission on all three channels, not through the colour palette."""
    gray = np.full((90, 120), 200, np.uint8)
    gray[20:70, 30:90] = 120  # a denser region for the threat to land on
    cv2.imwrite(str(tmp_path / "g.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    colour = np.full((90, 120, 3), (120, 170, 200), np.uint8)  # orange-ish in RGB
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    lib = ThreatLibrary.from_synth(["knife"], per_category=1, seed=0)
    params = {"count": [1, 1], "size": [0.4, 0.5]}
    s = TipGenerator(list_backgrounds(tmp_path, "g.png"), lib, params).sample(5)
    bg = to_unit_float(read_image(tmp_path / "g.png"))
    m = s.masks[0]
    assert m.any() and (s.image[m] < bg[m] - 1e-3).any()  # the threat darkens the scan
    np.testing.assert_array_equal(s.image[:, :, 0], s.image[:, :, 1])  # and stays gray
    np.testing.assert_array_equal(s.image[:, :, 1], s.image[:, :, 2])
    c = TipGenerator(list_backgrounds(tmp_path, "c.png"), lib, params).sample(5)
    assert np.abs(c.image[:, :, 0] - c.image[:, :, 2])[c.masks[0]].max() > 0.05  # false colour


def test_mixture_weights_determinism_and_workers(tmp_path):
    make_pidray(tmp_path / "p")
    for i in range(2):
        write_image(tmp_path / "bg" / f"N{i}.jpg", w=96, h=80, seed=i)
    spec = _spec()
    sources = [
        DataSource(kind="pidray", path=str(tmp_path / "p"), weight=1.0),
        DataSource(
            kind="tip",
            weight=3.0,
            params={
                "backgrounds": str(tmp_path / "bg"),
                "pattern": "N*.jpg",
                "threats": {"kind": "pidray", "path": str(tmp_path / "p")},
                "count": [1, 1],
            },
        ),
    ]
    ds = build_dataset(sources, spec, train=True, samples_per_epoch=16, seed=1, augment={})
    assert len(ds) == 16
    items = [ds[i] for i in range(16)]
    for image, t in items:
        _check_item(image, t, spec)
    counts = {s: sum(t["source"] == s for _, t in items) for s in ("pidray:p", "tip")}
    assert counts["tip"] > counts["pidray:p"] > 0
    assert all(len(t["labels"]) >= 1 for _, t in items if t["source"] == "tip")
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_detections)
    batches = list(loader)
    again = torch.cat([b[0] for b in batches])
    np.testing.assert_array_equal(again.numpy(), torch.stack([i[0] for i in items]).numpy())
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], items[0][0]) or ds[0][1]["source"] != items[0][1]["source"]
    val = build_dataset(sources[:1], spec, train=False, samples_per_epoch=99, seed=1, augment={})
    assert len(val) == 4  # offline-only validation enumerates its records once
    v0 = val[0]
    val.set_epoch(5)
    assert torch.equal(val[0][0], v0[0])


def test_mixture_with_online_synth(tmp_path):
    spec = _spec(
        size=(64, 64),
        classes=("firearm", "knife", "scissors", "pliers", "wrench", "hammer", "laptop"),
    )
    src = [
        DataSource(
            kind="synth", params={"kind": "baggage", "threat_fraction": 1.0, "clutter": "low"}
        )
    ]
    ds = build_dataset(src, spec, train=True, samples_per_epoch=3, seed=2, augment={})
    a = [ds[i] for i in range(3)]
    for image, t in a:
        _check_item(image, t, spec)
        assert t["is_threat"]
    b = build_dataset(src, spec, train=True, samples_per_epoch=3, seed=2, augment={})[1]
    assert torch.equal(a[1][0], b[0]) and torch.equal(a[1][1]["boxes"], b[1]["boxes"])
    with pytest.raises(ValueError, match="unknown key"):
        build_dataset(
            [DataSource(kind="synth", params={"colour": 1})],
            spec,
            train=True,
            samples_per_epoch=1,
            seed=0,
            augment={},
        )


def test_class_list_from_mixed_sources_and_synth_tip(tmp_path):
    from data_fixtures import make_hixray, make_opixray

    from xscan.data.mixture import class_names_for

    make_opixray(tmp_path / "o")
    make_hixray(tmp_path / "h")
    sources = [
        DataSource(kind="hixray", path=str(tmp_path / "h")),
        DataSource(kind="opixray", path=str(tmp_path / "o"), split="train"),
        DataSource(kind="synth"),
    ]
    names = class_names_for(sources)
    assert names == ["knife", "scissors", "lighter", "power_bank", "liquid_container", "phone"]
    spec = _spec(classes=tuple(names))
    lib = ThreatLibrary.from_synth(["knife"], per_category=1, seed=0)
    assert lib.patches[0].image.shape[2] == 2 and lib.patches[0].mask.any()  # raw low/high
    assert lib.patches[0].image[~lib.patches[0].mask].min() == 1.0  # air around the threat
    write_image(tmp_path / "bg" / "N0.jpg", w=120, h=90, seed=1)
    ds = build_dataset(
        [
            DataSource(
                kind="tip",
                params={
                    "backgrounds": str(tmp_path / "bg"),
                    "threats": {"kind": "synth", "per_category": 1},
                    "count": [1, 1],
                },
            )
        ],
        spec,
        train=False,
        samples_per_epoch=2,
        seed=0,
        augment=None,
    )
    image, t = ds[0]
    _check_item(image, t, spec)
    # into a false-colour scan through the palette: only pixels under the threat change
    gen = ds.sources[0].gen
    s = gen.sample(11)
    bg = to_unit_float(read_image(tmp_path / "bg" / "N0.jpg"))
    changed = np.abs(s.image - bg).max(axis=2) > 1e-6
    assert changed.any() and not (changed & ~s.masks[0]).any()
    np.testing.assert_array_equal(s.boxes[0], _mask_box(s.masks[0]))
    # the library renders every model class the generator can draw
    from xscan.synth.threats import THREAT_BUILDERS

    assert len(t["labels"]) == 1 and spec.class_names[int(t["labels"][0])] in THREAT_BUILDERS
    assert t["is_threat"] == (
        spec.class_names[int(t["labels"][0])] in ("knife", "scissors", "lighter")
    )


@pytest.mark.parametrize("modality", ["false_color", "raw_dual"])
def test_image_cache_gives_the_same_items_without_rereading(tmp_path, monkeypatch, modality):
    import xscan.data.sample as sample_mod

    folder = make_xscan_folder(tmp_path / "s")
    spec = _spec(modality=modality, classes=("knife",))
    src = [DataSource(kind="xscan", path=str(folder))]
    aug = {"affine": 1.0, "gain_p": 1.0, "noise_p": 1.0}

    def build(cache):
        return build_dataset(
            src, spec, train=True, samples_per_epoch=6, seed=3, augment=aug, cache_images=cache
        )

    plain, cached = build(False), build(True)
    reads = []
    real = sample_mod._read_image
    monkeypatch.setattr(sample_mod, "_read_image", lambda r, m: reads.append(r) or real(r, m))
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(6):
            a, b = plain[i], cached[i]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    n_scans = len(load_dataset("xscan", folder).records)
    # the plain dataset reads every item; the cached one each scan at most once
    assert len(reads) - 12 <= n_scans
    assert all(not im.flags.writeable for im in cached.sources[0]._images.values())
    # an evaluation mixture of offline folders exposes its records in item order
    val = build_dataset(src, spec, train=False, samples_per_epoch=9, seed=0, augment={})
    assert [r.image for r in val.records] == [
        r.image for r in load_dataset("xscan", folder).records
    ]


def test_image_cache_stays_off_when_it_would_not_fit_in_memory(tmp_path, monkeypatch, caplog):
    import xscan.data.mixture as mixture

    folder = make_xscan_folder(tmp_path / "s")
    monkeypatch.setattr(mixture, "_physical_memory", lambda: 1000)
    src = [DataSource(kind="xscan", path=str(folder))]
    ds = build_dataset(
        src, _spec(), train=True, samples_per_epoch=2, seed=0, augment={}, cache_images=True
    )
    assert ds.sources[0]._images is None and "not caching images" in caplog.text
    _check_item(*ds[0], _spec())
