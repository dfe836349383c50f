from __future__ import annotations

import pytest
from data_fixtures import (
    make_clcxray,
    make_gdxray,
    make_hixray,
    make_opixray,
    make_pidray,
    make_real_dev,
    make_sixray,
    make_voc,
    make_xscan_folder,
    make_yolo,
    write_image,
)

from xscan.data import detect_format, load_dataset, load_many
from xscan.data.records import ERROR, WARNING
from xscan.data.taxonomy import load_taxonomy, normalize_name


def _msgs(col, severity=None):
    return [
        (p.file.split("/")[-1], p.line, p.message)
        for p in col.problems
        if severity is None or p.severity == severity
    ]


def _has(col, fname, line, text, severity=None):
    return any(
        f == fname and (line is None or ln == line) and text in m
        for f, ln, m in _msgs(col, severity)
    )


def test_taxonomy_is_versioned_and_maps_all_spellings():
    tax = load_taxonomy()
    assert tax.version >= 1
    assert tax.classes[:3] == ("firearm", "firearm_part", "knife")
    assert "concealed_compartment" in tax.classes and "undeclared_metal" in tax.classes
    assert tax.canonical("Multi-tool_Knife", "opixray") == "knife"
    assert tax.canonical("multi tool knife", "opixray") == "knife"
    assert tax.canonical("PORTABLE-CHARGER-2", "hixray") == "power_bank"
    assert tax.canonical("HandCuffs", "pidray") == "handcuffs"
    assert tax.canonical("SprayCans", "clcxray") == "sprayer"
    assert tax.canonical("razor blade", "gdxray") == "knife"
    assert tax.canonical("banana", "opixray") is None
    assert normalize_name(" Folding_Knife ") == normalize_name("folding-knife")
    assert tax.order({"laptop", "firearm", "knife"}) == ["firearm", "knife", "laptop"]


def test_opixray_awkward_cases(tmp_path):
    col = load_dataset("opixray", make_opixray(tmp_path / "OPIXray_Dataset"))
    by_name = {r.image.split("/")[-1]: r for r in col.records}
    assert set(by_name) == {"009000.jpg", "009001.jpg", "009100.jpg"}
    r = by_name["009001.jpg"]
    # past the border: clipped to the 64 px width; inverted corners fixed; duplicate dropped
    assert [o.box for o in r.objects] == [(40.0, 10.0, 64.0, 30.0), (5.0, 20.0, 30.0, 40.0)]
    assert [o.label for o in r.objects] == ["knife", "scissors"]
    assert [o.original_label for o in r.objects] == ["folding knife", "SCISSOR"]
    assert _has(col, "009001.txt", 1, "extends past", WARNING)
    assert _has(col, "009001.txt", 2, "inverted corners", WARNING)
    assert _has(col, "009001.txt", 3, "duplicate", WARNING)
    assert _has(col, "009002.txt", 0, "empty annotation file", ERROR)
    assert _has(col, "009003.txt", 0, "not found", ERROR)
    assert _has(col, "009101.txt", 0, "not a supported image", ERROR)  # corrupt image
    assert _has(col, "009102.txt", 2, "non-numeric", ERROR)  # broken line
    assert _has(col, "009103.jpg", 0, "no annotation file", ERROR)
    assert col.skipped_records == 5 and col.skipped_objects == 1 and col.fixed_objects == 2
    assert col.class_names == ["knife", "scissors"]
    assert all(r.is_threat for r in col.records)
    assert by_name["009100.jpg"].subsets == ["OL1"]
    assert by_name["009100.jpg"].objects[0].occlusion_level == 1
    ol3 = load_dataset("opixray", tmp_path / "OPIXray_Dataset", split="OL3")
    assert len(ol3) == 0 and ol3.skipped_records == 2
    native = load_dataset("opixray", tmp_path / "OPIXray_Dataset", split="train", taxonomy="native")
    assert native.class_names == ["Folding_Knife", "Scissor", "Straight_Knife"]


def test_hixray_16bit_and_gray(tmp_path):
    col = load_dataset("hixray", make_hixray(tmp_path / "hixray"))
    assert len(col) == 2 and not col.errors
    assert col.class_names == ["lighter", "power_bank", "liquid_container", "phone"]
    train = next(r for r in col.records if r.split == "train")
    assert (train.width, train.height) == (64, 48)
    assert not train.is_threat  # power bank + phone are not prohibited
    test = next(r for r in col.records if r.split == "test")
    assert test.is_threat  # lighter


def test_sixray_csv_splits_and_boxes(tmp_path):
    root = make_sixray(tmp_path / "SIXray")
    col = load_dataset("sixray", root)
    recs = {r.image_id: r for r in col.records}
    assert set(recs) == {"sixray/P00001", "sixray/N0000001", "sixray/P00003", "sixray/N0000002"}
    assert recs["sixray/P00001"].image_labels["firearm"] == 1
    assert recs["sixray/P00001"].image_labels["knife"] == -1
    assert recs["sixray/P00001"].is_threat and recs["sixray/N0000001"].is_threat is False
    p3 = recs["sixray/P00003"]
    assert p3.subsets == ["sixray10"] and p3.split == "test"
    assert [(o.label, o.box) for o in p3.objects] == [
        ("knife", (2.0, 3.0, 20.0, 30.0)),
        ("hammer", (29.0, 9.0, 64.0, 40.0)),
    ]
    assert _has(col, "train.csv", 4, "not found", ERROR)
    assert _has(col, "train.csv", 5, "1, 0 or -1", ERROR)
    assert col.skipped_records == 2
    only_test = load_dataset("sixray", root, split="sixray10/test")
    assert len(only_test) == 2
    (root / "ImageSet" / "10" / "bad.csv").write_text("name,Gun,Banana\nP00001,1,0\n")
    with pytest.raises(ValueError, match="bad.csv:1: column 'Banana'"):
        load_dataset("sixray", root, split="10/bad")


def test_pidray_subsets_masks_and_errors(tmp_path):
    root = make_pidray(tmp_path / "pidray")
    col = load_dataset("pidray", root)
    assert len(col) == 4  # image 2 (unknown category) and 3 (missing file) skipped
    train = next(r for r in col.records if r.split == "train")
    assert [o.label for o in train.objects] == ["firearm", "handcuffs"]
    gun = train.objects[0]
    assert gun.box == (10.0, 10.0, 30.0, 30.0)
    assert gun.mask is not None and gun.mask["size"] == [48, 64]
    assert train.objects[1].box == (40.0, 5.0, 64.0, 15.0)  # clipped
    assert sorted(s for r in col.records for s in r.subsets) == ["easy", "hard", "hidden"]
    assert any("unknown category_id 99" in p.message for p in col.errors)
    assert any("xray_00003.png" in p.message for p in col.errors)
    hidden = load_dataset("pidray", root, split="hidden")
    assert len(hidden) == 1 and hidden.records[0].subsets == ["hidden"]


def test_clcxray_and_coco(tmp_path):
    col = load_dataset("clcxray", make_clcxray(tmp_path / "clc"))
    assert [o.label for o in col.records[0].objects] == ["knife", "liquid_container"]
    assert col.records[0].is_threat
    assert detect_format(tmp_path / "clc") == "coco"


def test_gdxray_column_order_and_gray(tmp_path):
    col = load_dataset("gdxray", make_gdxray(tmp_path / "GDXray"))
    recs = {r.image_id: r for r in col.records}
    assert set(recs) == {"gdxray/B0049_0001", "gdxray/B0049_0002", "gdxray/B0078_0001"}
    # row "1 10 50 5 40" is x1=10 x2=50 y1=5 y2=40
    assert recs["gdxray/B0049_0001"].objects[0].box == (10.0, 5.0, 50.0, 40.0)
    assert recs["gdxray/B0049_0001"].objects[0].label == "firearm"
    assert recs["gdxray/B0049_0002"].objects[0].box == (20.0, 10.0, 70.0, 55.0)
    assert recs["gdxray/B0078_0001"].is_threat is False
    assert _has(col, "ground_truth.txt", 3, "non-numeric", ERROR)
    assert _has(col, "ground_truth.txt", 4, "not found", ERROR)
    assert col.skipped_records == 2


def test_yolo_and_voc(tmp_path):
    col = load_dataset("yolo", make_yolo(tmp_path / "yolo"))
    a = next(r for r in col.records if r.image.endswith("a.jpg"))
    assert [o.label for o in a.objects] == ["firearm", "knife"]
    assert a.objects[0].box == pytest.approx((24.0, 12.0, 40.0, 36.0))
    b = next(r for r in col.records if r.image.endswith("b.jpg"))
    assert b.objects == [] and b.is_threat is False
    assert _has(col, "c.txt", 1, "out of range", ERROR) and col.skipped_records == 1
    voc = load_dataset("voc", make_voc(tmp_path / "voc"))
    assert len(voc) == 1 and [o.label for o in voc.records[0].objects] == ["wrench", "pliers"]
    assert voc.records[0].objects[0].box == (0.0, 0.0, 20.0, 20.0)
    with pytest.raises(ValueError, match="voc reader: unknown option"):
        load_dataset("voc", tmp_path / "voc", series_classes={})
    assert _has(voc, "x2.xml", None, "not valid XML", ERROR)


def test_real_dev_layout(tmp_path):
    col = load_dataset("xray_real_dev", make_real_dev(tmp_path / "real"))
    assert len(col) == 4 and col.skipped_records == 1
    by = {r.image_id: r for r in col.records}
    assert by["sixray/P0001"].is_threat and by["sixray/P0001"].image_labels["firearm"] == 1
    assert by["gdxray/B0049_0001"].image_labels == {"firearm": 1}
    assert by["gdxray/B0078_0001"].is_threat is False
    assert _has(col, "labels.csv", 4, "not found", ERROR)
    assert len(load_dataset("xray_real_dev", tmp_path / "real", split="gdxray")) == 2


def test_real_dev_tip_and_heldout_splits(tmp_path):
    """``tip`` is half of the benign scans by a hash of the name; ``heldout`` is the rest and
    every threat scan, so TIP backgrounds never reach an evaluation on ``heldout``."""
    six = tmp_path / "sixray"
    rows = ["image,is_threat,Gun,Knife,Wrench,Pliers,Scissors"]
    for i in range(40):
        name = f"images/{'P' if i < 10 else 'N'}{i:04d}.jpg"
        write_image(six / name, seed=i)
        rows.append(f"{name},{int(i < 10)},{int(i < 10)},0,0,0,0")
    (six / "labels.csv").write_text("\n".join(rows) + "\n")
    tip = load_dataset("xray_real_dev", six, split="tip")
    held = load_dataset("xray_real_dev", six, split="heldout")
    tip_ids = {r.image_id for r in tip.records}
    held_ids = {r.image_id for r in held.records}
    assert not tip_ids & held_ids and len(tip_ids | held_ids) == 40
    assert all(r.is_threat is False for r in tip.records)
    assert sum(r.is_threat for r in held.records) == 10
    assert 8 <= len(tip_ids) <= 22  # about half of the 30 benign scans
    # membership depends on the name alone: the same scans whatever else is listed
    (six / "labels.csv").write_text("\n".join(rows[:1] + rows[15:]) + "\n")
    again = load_dataset("xray_real_dev", six, split="tip")
    assert {r.image_id for r in again.records} == {i for i in tip_ids if int(i[-4:]) >= 14}


def test_xscan_synth_folder(tmp_path):
    root = make_xscan_folder(tmp_path / "synth")
    assert detect_format(root) == "xscan"
    col = load_dataset("xscan", root)
    r = col.records[0]
    assert r.raw_low.endswith("raw/000000_low.png") and r.is_threat
    o = r.objects[0]
    assert o.box == (16.0, 12.0, 32.0, 24.0) and o.occlusion == 0.3 and o.occlusion_level == 1
    assert o.attrs["material"] == "steel" and o.mask is not None


def test_detect_and_mix(tmp_path):
    assert detect_format(make_opixray(tmp_path / "o")) == "opixray"
    assert detect_format(make_hixray(tmp_path / "h")) == "hixray"
    for lst in (tmp_path / "o").glob("*/*_knife*.txt"):  # a copy without OPIXray's lists:
        lst.unlink()  # told apart by its class names
    assert detect_format(tmp_path / "o") == "opixray"
    assert detect_format(make_pidray(tmp_path / "p")) == "pidray"
    assert detect_format(make_gdxray(tmp_path / "g")) == "gdxray"
    assert detect_format(make_sixray(tmp_path / "s")) == "sixray"
    assert detect_format(make_yolo(tmp_path / "y")) == "yolo"
    assert detect_format(make_voc(tmp_path / "v")) == "voc"
    assert detect_format(make_real_dev(tmp_path / "r")) == "xray_real_dev"
    with pytest.raises(ValueError, match="no known dataset layout"):
        detect_format(tmp_path / "o" / "train" / "train_image")
    mixed = load_many([("hixray", tmp_path / "h", None), ("opixray", tmp_path / "o", "train")])
    assert mixed.class_names == [
        "knife",
        "scissors",
        "lighter",
        "power_bank",
        "liquid_container",
        "phone",
    ]
