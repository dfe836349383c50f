"""SIXray: image-level label CSVs, split lists, and the VOC boxes of its annotated subsets.

Published layout (``ROOT`` = the SIXray folder)::

    ROOT/JPEGImage/P00001.jpg, N0000001.jpg ...      # (also JPEGImages/ or images/)
    ROOT/ImageSet/10/train.csv, test.csv              # SIXray10; 100/ and 1000/ likewise
    ROOT/Annotation/P00001.xml                        # VOC boxes of the annotated subset

CSV rows: ``name,Gun,Knife,Wrench,Pliers,Scissors[,Hammer]`` with 1 (present), 0 or -1
(absent). ``split`` is ``10/train``, ``sixray100/test``, ``train`` (the only ``train.csv``
found) or a CSV path; ``None`` reads every CSV found, or only the boxed subset when there are
none. A label column that is not a SIXray class is an error: dropping it would turn its
positives into benign scans.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from xscan.data.imagefiles import find_image, probe_image
from xscan.data.records import (
    DatasetCollection,
    ProblemLog,
    RecordBuilder,
    ScanRecord,
    finish,
)
from xscan.data.taxonomy import LabelMapper
from xscan.data.voc import add_voc_objects, parse_voc

IMAGE_DIRS = ("JPEGImage", "JPEGImages", "images", "Image", "image")
ANN_DIRS = ("Annotation", "Annotations", "annotation", "annotations")
SET_DIRS = ("ImageSet", "ImageSets", "imageset")
_SPLIT = re.compile(r"^(?:sixray)?(10|100|1000)[/_-](\w+)$", re.IGNORECASE)


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def find_csvs(root: Path, split: str | None) -> list[tuple[Path, str | None, str | None]]:
    """``[(csv, split name, subset)]`` for ``split`` (see the module docstring)."""
    if split and split.endswith(".csv"):
        p = Path(split) if Path(split).is_absolute() else root / split
        if not p.is_file():
            raise FileNotFoundError(f"{p}: SIXray split CSV not found")
        return [(p, p.stem, None)]
    sets = _first_dir(root, SET_DIRS)
    found = []
    if sets is not None:
        for p in sorted(sets.glob("*/*.csv")):
            found.append((p, p.stem, f"sixray{p.parent.name}"))
    found += [(p, p.stem, None) for p in sorted(root.glob("*.csv"))]
    if split is None:
        return found
    m = _SPLIT.match(split)
    if m:
        hits = [f for f in found if f[2] == f"sixray{m.group(1)}" and f[1] == m.group(2)]
    else:
        hits = [f for f in found if f[1] == split]
    if len(hits) != 1:
        have = sorted({f"{f[2] + '/' if f[2] else ''}{f[1]}" for f in found})
        raise ValueError(
            f"{root}: split {split!r} matches {len(hits)} CSV files; use one of {have}"
        )
    return hits


def _read_csv(
    path: Path,
    split: str | None,
    subset: str | None,
    mapper: LabelMapper,
    log: ProblemLog,
    images: dict[str, ScanRecord],
) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        log.error(path, 1, "empty CSV")
        return
    header = [h.strip() for h in rows[0]]
    classes = header[1:]
    for c in classes:
        if mapper.tax.canonical(c, "sixray") is None:
            raise ValueError(f"{path}:1: column {c!r} is not a SIXray class")
    for i, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            log.error(path, i, f"expected {len(header)} fields, got {len(row)}; skipped")
            log.skipped_records += 1
            continue
        try:
            vals = [int(float(v)) for v in row[1:]]
            if any(v not in (-1, 0, 1) for v in vals):
                raise ValueError
        except ValueError:
            log.error(path, i, f"labels must be 1, 0 or -1, got {row[1:]}; skipped")
            log.skipped_records += 1
            continue
        name = Path(row[0].strip()).stem
        rec = images.get(name)
        if rec is None:
            rec = ScanRecord(image=None, width=0, height=0, source="sixray", image_id=name)
            rec.attrs["csv"] = (str(path), i)
            images[name] = rec
        rec.split = split
        if subset and subset not in rec.subsets:
            rec.subsets.append(subset)
        for c, v in zip(classes, vals, strict=True):
            label, _ = mapper(c)
            rec.image_labels[label] = max(v, rec.image_labels.get(label, -1))


def load_sixray(
    root: str | Path, split: str | None = None, taxonomy: str = "canonical", verify: bool = False
) -> DatasetCollection:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: SIXray folder not found")
    mapper, log = LabelMapper("sixray", taxonomy), ProblemLog()
    entries: dict[str, ScanRecord] = {}
    for path, sname, subset in find_csvs(root, split):
        _read_csv(path, sname, subset, mapper, log, entries)
    img_dir = _first_dir(root, IMAGE_DIRS)
    img_dirs = [d for d in (img_dir, root) if d is not None]
    ann_dir = _first_dir(root, ANN_DIRS)
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))} if ann_dir else {}
    if not entries:  # no CSV: the boxed subset alone
        for stem in xmls:
            entries[stem] = ScanRecord(
                image=None, width=0, height=0, source="sixray", image_id=stem
            )
    records = []
    for stem, rec in entries.items():
        if _resolve(rec, stem, img_dirs, xmls.get(stem), mapper, log, verify):
            records.append(rec)
        else:
            log.skipped_records += 1
    names = mapper.order(
        {o.label for r in records for o in r.objects} | {k for r in records for k in r.image_labels}
    )
    return finish(records, log, names, str(root), taxonomy)


def _resolve(
    rec: ScanRecord,
    stem: str,
    img_dirs: list[Path],
    xml: Path | None,
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
) -> bool:
    where, line = rec.attrs.pop("csv", (str(xml), 0))
    image = find_image(stem, img_dirs)
    if image is None:
        log.error(where, line, f"image {stem}.* not found in {[str(d) for d in img_dirs]}")
        return False
    size = probe_image(image, log, where, line, verify)
    if size is None:
        return False
    rec.image, rec.width, rec.height = str(image), size[0], size[1]
    rec.image_id = f"sixray/{stem}"
    if xml is not None:
        vf, complete = parse_voc(xml, log)
        b = RecordBuilder(rec, log, xml)
        b.ok = complete and vf is not None
        if vf is not None:
            add_voc_objects(b, vf, mapper, "sixray")
        if not b.ok:
            return False
    pos = {k for k, v in rec.image_labels.items() if v == 1}
    pos |= {o.label for o in rec.objects}
    if rec.image_labels or rec.objects:
        rec.is_threat = any(mapper.is_threat(mapper(k)[1]) for k in pos)
    return True
