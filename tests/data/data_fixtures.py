"""Tiny datasets written in the exact published layouts, awkward cases included."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, w: int = 64, h: int = 48, kind: str = "rgb", seed: int = 0) -> Path:
    """A small scan-like image: white background, one dark rectangle. ``kind``: rgb, gray,
    gray16 or corrupt (bytes that are not an image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "corrupt":
        path.write_bytes(b"this is not an image at all" * 4)
        return path
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 245, np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = rng.integers(20, 120, 3, dtype=np.uint8)
    if kind == "gray":
        img = img[:, :, 0]
    elif kind == "gray16":
        img = img[:, :, 0].astype(np.uint16) * 257
    ok = cv2.imwrite(str(path), img)
    assert ok, path
    return path


def make_opixray(root: Path) -> Path:
    """OPIXray_Dataset/{train,test}/{split}_image + _annotation + occlusion lists."""
    tr, te = root / "train", root / "test"
    for i in range(3):
        write_image(tr / "train_image" / f"00900{i}.jpg", seed=i)
    ann = tr / "train_annotation"
    ann.mkdir(parents=True)
    (ann / "009000.txt").write_text("009000.jpg Straight_Knife 10 12 30 40\n")
    # other spelling/case; a box past the right border; inverted corners; a duplicate box
    (ann / "009001.txt").write_text(
        "009001.jpg folding knife 40 10 80 30\n"
        "009001.jpg SCISSOR 30 40 5 20\n"
        "009001.jpg Scissor 5 20 30 40\n"
    )
    (ann / "009002.txt").write_text("")  # empty annotation file
    (ann / "009003.txt").write_text("009003.jpg Utility_Knife 1 1 9 9\n")  # image missing
    (tr / "train_knife.txt").write_text("009000\n009001\n009002\n009003\n")
    write_image(te / "test_image" / "009100.jpg", seed=5)
    write_image(te / "test_image" / "009101.jpg", kind="corrupt")
    write_image(te / "test_image" / "009102.jpg", seed=6)
    write_image(te / "test_image" / "009103.jpg", seed=7)  # no annotation file
    ann = te / "test_annotation"
    ann.mkdir(parents=True)
    (ann / "009100.txt").write_text("009100.jpg Multi-tool_Knife 5 5 25 25\n")
    (ann / "009101.txt").write_text("009101.jpg Folding_Knife 5 5 25 25\n")
    (ann / "009102.txt").write_text(
        "009102.jpg Straight_Knife 5 5 25 25\n009102.jpg Straight_Knife 5 five 25 25\n"
    )
    (te / "test_knife.txt").write_text("009100\n009101\n009102\n")
    (te / "test_knife-1.txt").write_text("009100\n")
    (te / "test_knife-3.txt").write_text("009101\n009102\n")
    return root


def make_hixray(root: Path) -> Path:
    for split in ("train", "test"):
        (root / split / f"{split}_annotation").mkdir(parents=True)
    write_image(root / "train" / "train_image" / "a001.png", kind="gray16")
    (root / "train" / "train_annotation" / "a001.txt").write_text(
        "a001.png Portable_Charger_1 2 3 20 30\na001.png Mobile_Phone 30 5 60 20\n"
    )
    write_image(root / "test" / "test_image" / "b001.jpg", kind="gray")
    (root / "test" / "test_annotation" / "b001.txt").write_text(
        "b001.jpg Nonmetallic_Lighter 2 3 20 30\nb001.jpg water 30 5 60 20\n"
    )
    return root


def voc_xml(filename: str, w: int, h: int, objects: list[tuple[str, tuple]]) -> str:
    objs = "".join(
        f"  <object>\n    <name>{n}</name>\n    <difficult>0</difficult>\n    <bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
        "</bndbox>\n  </object>\n"
        for n, b in objects
    )
    return (
        f"<annotation>\n  <filename>{filename}</filename>\n  <size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>\n{objs}</annotation>\n"
    )


def make_sixray(root: Path) -> Path:
    """SIXray: JPEGImage/, ImageSet/10/{train,test}.csv, Annotation/*.xml."""
    for name in ("P00001", "P00002", "P00003", "N0000001", "N0000002"):
        write_image(root / "JPEGImage" / f"{name}.jpg", seed=len(name))
    s10 = root / "ImageSet" / "10"
    s10.mkdir(parents=True)
    (s10 / "train.csv").write_text(
        "name,Gun,Knife,Wrench,Pliers,Scissors,Hammer\n"
        "P00001,1,-1,-1,-1,-1,-1\n"
        "N0000001,-1,-1,-1,-1,-1,-1\n"
        "P00009,1,0,0,0,0,0\n"  # image file missing
        "P00002,1,x,0,0,0,0\n"  # broken line
    )
    (s10 / "test.csv").write_text(
        "name,Gun,Knife,Wrench,Pliers,Scissors,Hammer\nP00003,0,1,0,0,0,1\nN0000002,0,0,0,0,0,0\n"
    )
    ann = root / "Annotation"
    ann.mkdir()
    (ann / "P00003.xml").write_text(
        voc_xml("P00003.jpg", 64, 48, [("knife", (3, 4, 20, 30)), ("Hammer", (30, 10, 70, 40))])
    )
    return root


def coco_doc(images: list[dict], anns: list[dict], cats: list[str]) -> dict:
    return {
        "images": images,
        "annotations": [{"id": i + 1, "iscrowd": 0, **a} for i, a in enumerate(anns)],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)],
    }


def make_pidray(root: Path) -> Path:
    """PIDray: annotations/xray_train.json + train/, xray_test_{easy,hard,hidden}.json."""
    cats = [
        "Baton",
        "Pliers",
        "Hammer",
        "Powerbank",
        "Scissors",
        "Wrench",
        "Gun",
        "Bullet",
        "Sprayer",
        "HandCuffs",
        "Knife",
        "Lighter",
    ]
    (root / "annotations").mkdir(parents=True)
    write_image(root / "train" / "xray_00001.png", seed=1)
    write_image(root / "train" / "xray_00002.png", seed=2)
    poly = [[10, 10, 30, 10, 30, 30, 10, 30]]
    train = coco_doc(
        [
            {"id": 1, "file_name": "xray_00001.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "xray_00002.png", "width": 64, "height": 48},
            {"id": 3, "file_name": "xray_00003.png", "width": 64, "height": 48},
        ],  # missing file
        [
            {"image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "segmentation": poly},
            {"image_id": 1, "category_id": 10, "bbox": [40, 5, 30, 10], "segmentation": []},
            {"image_id": 2, "category_id": 99, "bbox": [1, 1, 5, 5]},
        ],  # unknown category id
        cats,
    )
    (root / "annotations" / "xray_train.json").write_text(json.dumps(train))
    for k, sub in enumerate(("easy", "hard", "hidden")):
        write_image(root / sub / f"xray_{sub}_0001.png", seed=10 + k)
        doc = coco_doc(
            [{"id": 1, "file_name": f"xray_{sub}_0001.png", "width": 64, "height": 48}],
            [{"image_id": 1, "category_id": 11, "bbox": [5, 5, 10, 10]}],
            cats,
        )
        (root / "annotations" / f"xray_test_{sub}.json").write_text(json.dumps(doc))
    return root


def make_clcxray(root: Path) -> Path:
    cats = [
        "blade",
        "dagger",
        "knife",
        "scissors",
        "SwissArmyKnife",
        "Cans",
        "CartonDrinks",
        "GlassBottle",
        "PlasticBottle",
        "VacuumCup",
        "SprayCans",
    ]
    write_image(root / "images" / "0001.jpg", seed=3)
    doc = coco_doc(
        [{"id": 7, "file_name": "0001.jpg", "width": 64, "height": 48}],
        [
            {"image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 10]},
            {"image_id": 7, "category_id": 9, "bbox": [20, 2, 10, 30]},
        ],
        cats,
    )
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.json").write_text(json.dumps(doc))
    return root


def make_gdxray(root: Path) -> Path:
    """GDXray/Baggages/B0049 (+ ground_truth.txt: i x1 x2 y1 y2), B0078 background."""
    s = root / "Baggages" / "B0049"
    for i in (1, 2, 3):
        write_image(s / f"B0049_000{i}.png", w=80, h=60, kind="gray", seed=i)
    # column order x1 x2 y1 y2; MATLAB-style numbers; line 3 is broken; image 4 is missing
    (s / "ground_truth.txt").write_text(
        "1.0000000e+00 1.0000000e+01 5.0000000e+01 5.0000000e+00 4.0000000e+01\n"
        "2 20 70 10 55\n"
        "3 20 seventy 10 55\n"
        "4 1 10 1 10\n"
    )
    b = root / "Baggages" / "B0078"
    write_image(b / "B0078_0001.png", w=80, h=60, kind="gray", seed=9)
    return root


def make_yolo(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: Gun, 1: knife}\n"
    )
    write_image(root / "images" / "train" / "a.jpg", seed=1)
    write_image(root / "images" / "train" / "b.jpg", seed=2)
    write_image(root / "images" / "val" / "c.jpg", seed=3)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.1 0.1\n")
    (root / "labels" / "train" / "b.txt").write_text("")  # background scan
    (root / "labels" / "val" / "c.txt").write_text("7 0.5 0.5 0.2 0.2\n")  # class out of range
    return root


def make_voc(root: Path) -> Path:
    write_image(root / "JPEGImages" / "x1.jpg", seed=4)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x1.xml").write_text(
        voc_xml("x1.jpg", 64, 48, [("Wrench", (1, 1, 20, 20)), ("pliers", (30, 5, 50, 40))])
    )
    (root / "Annotations" / "x2.xml").write_text("<annotation><filename>x2.jpg")  # broken XML
    return root


def make_real_dev(root: Path) -> Path:
    six = root / "sixray"
    write_image(six / "images" / "P0001.jpg", seed=1)
    write_image(six / "images" / "N0001.jpg", seed=2)
    (six / "labels.csv").write_text(
        "image,is_threat,Gun,Knife,Wrench,Pliers,Scissors\n"
        "images/P0001.jpg,1,1,0,0,0,0\nimages/N0001.jpg,0,0,0,0,0,0\n"
        "images/P0002.jpg,1,0,1,0,0,0\n"  # missing file
    )
    gdx = root / "gdxray"
    write_image(gdx / "train" / "0" / "B0049_0001.jpg", seed=3)
    write_image(gdx / "train" / "3" / "B0078_0001.jpg", seed=4)
    (gdx / "labels.csv").write_text(
        "image,split,class_id,class,gdxray_series,is_threat\n"
        "train/0/B0049_0001.jpg,train,0,gun,B0049,1\n"
        "train/3/B0078_0001.jpg,train,3,other_background,B0078,0\n"
    )
    return root


def make_xscan_folder(root: Path) -> Path:
    """The layout ``xscan synth --out DIR`` writes (docs/architecture.md)."""
    write_image(root / "images" / "000000.png", seed=1)
    raw = root / "raw"
    raw.mkdir(parents=True)
    t = np.full((48, 64), 60000, np.uint16)
    cv2.imwrite(str(raw / "000000_low.png"), t)
    cv2.imwrite(str(raw / "000000_high.png"), t)
    doc = coco_doc(
        [
            {
                "id": 1,
                "file_name": "000000.png",
                "width": 64,
                "height": 48,
                "raw_low": "raw/000000_low.png",
                "raw_high": "raw/000000_high.png",
                "has_threat": True,
                "kind": "baggage",
                "seed": 5,
            }
        ],
        [
            {
                "image_id": 1,
                "category_id": 1,
                "bbox": [16, 12, 16, 12],
                "area": 192,
                "segmentation": [[16, 12, 32, 12, 32, 24, 16, 24]],
                "material": "steel",
                "occlusion": 0.3,
                "occlusion_level": 1,
            }
        ],
        ["knife", "laptop"],
    )
    (root / "annotations.json").write_text(json.dumps(doc))
    (root / "manifest.json").write_text(json.dumps({"generator": "xscan", "seed": 5}))
    return root
