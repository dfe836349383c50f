"""COCO JSON: generic COCO, PIDray, CLCXray and ``xscan synth`` folders.

* Generic: a JSON file, or a folder holding ``annotations.json``, ``annotations/*.json`` or
  ``*.json``; ``split`` picks the JSON whose name contains it (``instances_val2017``).
* PIDray: ``ROOT/annotations/xray_train.json`` + ``ROOT/train/``, and the test subsets
  ``xray_test_{easy,hard,hidden}.json`` + ``ROOT/{easy,hard,hidden}/``; ``split``: ``train``,
  ``test`` (all three), ``easy``, ``hard`` or ``hidden``.
* CLCXray: COCO JSON files beside an image folder (found like the generic case).
* ``xscan``: ``DIR/annotations.json`` with ``DIR/images/`` and raw ``low``/``high`` 16-bit
  transmissions, ``has_threat``, per-object ``occlusion``, ``material`` and ``conspicuity``
  (see ``docs/architecture.md``).

COCO ``bbox`` is ``[x, y, w, h]`` in pixels; records hold xyxy. Polygons are converted to
compressed RLE so every mask in a record is one format.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from xscan.data.imagefiles import find_image, probe_image
from xscan.data.records import (
    DatasetCollection,
    ObjectRecord,
    ProblemLog,
    RecordBuilder,
    ScanRecord,
    finish,
    merge_collections,
)
from xscan.data.taxonomy import LabelMapper

PIDRAY_SUBSETS = ("easy", "hard", "hidden")


def to_rle(seg: Any, height: int, width: int) -> dict[str, Any] | None:
    """COCO segmentation (polygons, RLE or compressed RLE) -> compressed RLE with str counts."""
    from pycocotools import mask as mask_utils

    if not seg:
        return None
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = dict(seg)
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def find_jsons(root: Path, split: str | None) -> list[Path]:
    if root.is_file():
        return [root]
    if (root / "annotations.json").is_file() and split is None:
        return [root / "annotations.json"]
    cands = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    cands = cands or sorted(root.glob("*.json"))
    if split is not None:
        cands = [p for p in cands if split.lower() in p.stem.lower()]
    if not cands:
        raise FileNotFoundError(
            f"{root}: no COCO JSON found{f' for split {split!r}' if split else ''} "
            "(expected annotations.json, annotations/*.json or *.json)"
        )
    return cands


def _image_dirs(json_path: Path, extra: list[Path]) -> list[Path]:
    base, up = json_path.parent, json_path.parent.parent
    stem = json_path.stem
    tail = stem.split("_")[-1]  # instances_train2017 -> train2017, xray_test_easy -> easy
    dirs = list(extra) + [
        base / "images",
        base,
        up / "images",
        up / tail,
        up / "images" / tail,
        up / stem,
        up,
        base / tail,
    ]
    return [d for d in dirs if d.is_dir()]


def load_coco_file(
    json_path: Path,
    dataset: str = "coco",
    taxonomy: str = "canonical",
    verify: bool = False,
    split: str | None = None,
    subset: str | None = None,
    image_dirs: list[Path] | None = None,
) -> DatasetCollection:
    """Read one COCO JSON file into a collection."""
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path}:{e.lineno}: not valid JSON ({e.msg})") from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_path}: expected a list under {key!r} (COCO format)")
    mapper, log = LabelMapper(dataset, taxonomy), ProblemLog()
    cats: dict[int, str] = {}
    for c in data["categories"]:
        cats[int(c["id"])] = str(c["name"])
        if mapper(c["name"])[0] is None:
            log.error(
                json_path,
                0,
                f"category {c['name']!r} (id {c['id']}) is not a known "
                f"{dataset} class; its scans are skipped",
            )
    by_image: dict[Any, list[dict]] = defaultdict(list)
    image_ids = {im.get("id") for im in data["images"]}
    for a in data["annotations"]:
        if a.get("image_id") not in image_ids:
            log.error(
                json_path, 0, f"annotation id {a.get('id')}: unknown image_id {a.get('image_id')!r}"
            )
            log.skipped_objects += 1
            continue
        by_image[a["image_id"]].append(a)
    dirs = _image_dirs(json_path, list(image_dirs or []))
    records = []
    for im in data["images"]:
        rec = _read_image(
            im,
            by_image.get(im.get("id"), []),
            cats,
            json_path,
            dirs,
            dataset,
            mapper,
            log,
            verify,
            split,
        )
        if rec is None:
            log.skipped_records += 1
            continue
        if subset:
            rec.subsets.append(subset)
        records.append(rec)
    names = mapper.order({o.label for r in records for o in r.objects})
    return finish(records, log, names, str(json_path), taxonomy)


def _read_image(
    im: dict,
    anns: list[dict],
    cats: dict[int, str],
    json_path: Path,
    dirs: list[Path],
    dataset: str,
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
    split: str | None,
) -> ScanRecord | None:
    fname = str(im.get("file_name", ""))
    where = f"{json_path} (image id {im.get('id')}, {fname!r})"
    image = find_image(fname, dirs) if fname else None
    if image is None:
        log.error(
            json_path,
            0,
            f"image id {im.get('id')}: file {fname!r} not found in {[str(d) for d in dirs[:4]]}",
        )
        return None
    size = probe_image(image, log, json_path, 0, verify)
    if size is None:
        return None
    if im.get("width") and im.get("height") and (int(im["width"]), int(im["height"])) != size:
        log.warn(where, 0, f"JSON says {im['width']}x{im['height']}, file is {size[0]}x{size[1]}")
    root = json_path.parent
    rec = ScanRecord(
        image=str(image),
        width=size[0],
        height=size[1],
        source=dataset,
        split=split,
        image_id=f"{dataset}/{split or json_path.stem}/{im.get('id')}",
        raw_low=str(root / im["raw_low"]) if im.get("raw_low") else None,
        raw_high=str(root / im["raw_high"]) if im.get("raw_high") else None,
    )
    rec.attrs.update({k: im[k] for k in ("kind", "seed", "coco_id") if k in im})
    rec.attrs["coco_id"] = im.get("id")
    b = RecordBuilder(rec, log, where)
    for a in anns:
        _add_annotation(b, a, cats, mapper, dataset, size)
    if not b.ok:
        return None
    if "has_threat" in im:
        rec.is_threat = bool(im["has_threat"])
    else:
        rec.is_threat = any(mapper.is_threat(o.attrs.get("canonical")) for o in rec.objects)
    return rec


def _add_annotation(
    b: RecordBuilder,
    a: dict,
    cats: dict[int, str],
    mapper: LabelMapper,
    dataset: str,
    size: tuple[int, int],
) -> None:
    aid = a.get("id")
    name = cats.get(a.get("category_id"))
    if name is None:
        b.fail(0, f"annotation id {aid}: unknown category_id {a.get('category_id')!r}")
        return
    label, canonical = mapper(name)
    if label is None:
        b.fail(0, f"annotation id {aid}: unknown {dataset} class {name!r}")
        return
    if a.get("iscrowd"):
        b.log.warn(b.file, 0, f"annotation id {aid}: crowd region skipped")
        b.log.skipped_objects += 1
        return
    try:
        x, y, w, h = (float(v) for v in a["bbox"])
    except (KeyError, TypeError, ValueError):
        b.fail(0, f"annotation id {aid}: bbox must be [x, y, w, h], got {a.get('bbox')!r}")
        return
    try:
        mask = to_rle(a.get("segmentation"), size[1], size[0])
    except Exception as e:  # pycocotools raises bare exceptions on malformed input
        b.log.warn(b.file, 0, f"annotation id {aid}: unreadable segmentation ({e}); box kept")
        mask = None
    occ = a.get("occlusion")
    b.add(
        ObjectRecord(
            box=(x, y, x + w, y + h),
            label=label,
            original_label=name,
            mask=mask,
            occlusion=float(occ) if occ is not None else None,
            occlusion_level=a.get("occlusion_level"),
            attrs={
                "canonical": canonical,
                **({"material": a["material"]} if "material" in a else {}),
                **({"conspicuity": float(a["conspicuity"])} if "conspicuity" in a else {}),
            },
        ),
        0,
    )


def load_coco(
    path: str | Path,
    split: str | None = None,
    taxonomy: str = "canonical",
    verify: bool = False,
    dataset: str = "coco",
    image_dirs: list[str] | None = None,
) -> DatasetCollection:
    """Read every COCO JSON selected by ``path``/``split`` into one collection."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    dirs = [Path(d) for d in image_dirs or []]
    parts = [
        load_coco_file(j, dataset, taxonomy, verify, split or _split_of(j), None, dirs)
        for j in find_jsons(path, split)
    ]
    return _merged(parts, taxonomy, str(path))


def _split_of(json_path: Path) -> str | None:
    stem = json_path.stem.lower()
    for s in ("train", "val", "test"):
        if s in stem:
            return s
    return None


def _merged(parts: list[DatasetCollection], taxonomy: str, source: str) -> DatasetCollection:
    mapper = LabelMapper("coco", taxonomy)
    names = mapper.order({n for p in parts for n in p.class_names})
    out = merge_collections(parts, names)
    out.source, out.taxonomy = source, taxonomy
    return out


def load_pidray(
    root: str | Path, split: str | None = None, taxonomy: str = "canonical", verify: bool = False
) -> DatasetCollection:
    root = Path(root)
    ann = root / "annotations"
    if not ann.is_dir():
        raise FileNotFoundError(f"{root}: expected annotations/xray_*.json (PIDray layout)")
    want = {
        None: ("train", *PIDRAY_SUBSETS),
        "train": ("train",),
        "test": PIDRAY_SUBSETS,
    }.get(split, (split,))
    parts = []
    for s in want:
        j = ann / ("xray_train.json" if s == "train" else f"xray_test_{s}.json")
        if not j.is_file():
            if split is not None:
                raise FileNotFoundError(f"{j}: PIDray annotation file for {s!r} not found")
            continue
        parts.append(
            load_coco_file(
                j,
                "pidray",
                taxonomy,
                verify,
                "train" if s == "train" else "test",
                None if s == "train" else s,
                [root / s],
            )
        )
    if not parts:
        raise FileNotFoundError(f"{ann}: no xray_train.json / xray_test_*.json")
    return _merged(parts, taxonomy, str(root))


def load_clcxray(root, split=None, taxonomy="canonical", verify=False) -> DatasetCollection:
    return load_coco(root, split, taxonomy, verify, dataset="clcxray")


def load_xscan(root, split=None, taxonomy="canonical", verify=False) -> DatasetCollection:
    """A folder written by ``xscan synth`` (``DIR/annotations.json``, ``DIR/images``)."""
    root = Path(root)
    j = root / "annotations.json" if root.is_dir() else root
    if not j.is_file():
        raise FileNotFoundError(f"{root}: expected annotations.json (xscan synth folder)")
    col = load_coco_file(j, "xscan", taxonomy, verify, split, None, [j.parent / "images"])
    col.source = str(root)
    return col
