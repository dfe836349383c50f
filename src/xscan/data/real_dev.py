"""The image-level CSV layout of the ``xray-real-dev`` folder.

Layout (``ROOT`` holds ``sixray/`` and ``gdxray/``, or is one of them)::

    ROOT/sixray/labels.csv   image,is_threat,Gun,Knife,Wrench,Pliers,Scissors   (1/0)
    ROOT/gdxray/labels.csv   image,split,class_id,class,gdxray_series,is_threat

``image`` is relative to the CSV's folder. Columns other than ``image``, ``is_threat``,
``split``, ``class_id``, ``class`` and ``gdxray_series`` are per-class image labels. The
records carry no boxes: they serve image-level evaluation, false-alarm calibration and benign
backgrounds for threat image projection.

Two computed splits keep the scans used as TIP backgrounds out of an evaluation:
``split="tip"`` is half of the benign scans, chosen by a hash of the image name (stable when
scans are added), and ``split="heldout"`` is everything else: the other benign scans and
every threat scan. Any other ``split`` filters on the CSV's ``split`` column, or picks a
sub-folder (``sixray``).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from xscan.data.imagefiles import probe_image
from xscan.data.records import DatasetCollection, ProblemLog, ScanRecord, finish
from xscan.data.taxonomy import LabelMapper

META_COLUMNS = {"image", "is_threat", "split", "class_id", "class", "gdxray_series"}
COMPUTED_SPLITS = ("tip", "heldout")


def tip_background(image: str) -> bool:
    """Whether a benign scan named ``image`` (as in ``labels.csv``) is in the ``tip`` half."""
    return hashlib.sha256(image.encode()).digest()[0] < 128


def _csvs(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if (root / "labels.csv").is_file():
        return [root / "labels.csv"]
    found = sorted(root.glob("*/labels.csv"))
    if not found:
        raise FileNotFoundError(f"{root}: no labels.csv (xray-real-dev layout)")
    return found


def load_real_dev(
    root: str | Path, split: str | None = None, taxonomy: str = "canonical", verify: bool = False
) -> DatasetCollection:
    """``split``: ``tip`` / ``heldout`` (module docstring), a value of the ``split`` column, or
    a sub-folder (``sixray``)."""
    root = Path(root)
    csvs = _csvs(root)
    if split is not None and any(p.parent.name == split for p in csvs):
        csvs, split = [p for p in csvs if p.parent.name == split], None
    mapper, log, records = LabelMapper("xray_real_dev", taxonomy), ProblemLog(), []
    for path in csvs:
        records += _read_csv(path, split, mapper, log, verify)
    names = mapper.order({k for r in records for k in r.image_labels})
    return finish(records, log, names, str(root), taxonomy)


def _read_csv(
    path: Path, split: str | None, mapper: LabelMapper, log: ProblemLog, verify: bool
) -> list[ScanRecord]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "image" not in header or "is_threat" not in header:
            raise ValueError(f"{path}:1: expected columns 'image' and 'is_threat', got {header}")
        class_cols = [c for c in header if c not in META_COLUMNS]
        for c in class_cols:
            if mapper(c)[0] is None:
                raise ValueError(f"{path}:1: column {c!r} is not a known class")
        rows = list(reader)
    out = []
    for i, row in enumerate(rows, 2):
        if split in COMPUTED_SPLITS:
            benign_tip = row.get("is_threat", "").strip() == "0" and tip_background(row["image"])
            if benign_tip != (split == "tip"):
                continue
        elif split is not None and row.get("split") != split:
            continue
        rec = _row(path, i, row, class_cols, mapper, log, verify)
        if rec is None:
            log.skipped_records += 1
        else:
            out.append(rec)
    return out


def _row(
    path: Path,
    line: int,
    row: dict,
    class_cols: list[str],
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
) -> ScanRecord | None:
    try:
        threat = int(row["is_threat"])
        if threat not in (0, 1):
            raise ValueError
        vals = {c: int(row[c]) for c in class_cols if (row[c] or "").strip()}
        if any(v not in (0, 1) for v in vals.values()):
            raise ValueError
    except (TypeError, ValueError):
        log.error(path, line, f"expected 0/1 labels, got {dict(row)}; skipped")
        return None
    if len(vals) < len(class_cols):
        log.warn(path, line, "per-class labels left blank: read as unknown, is_threat kept")
    image = path.parent / row["image"]
    size = probe_image(image, log, path, line, verify)
    if size is None:
        return None
    rec = ScanRecord(
        image=str(image),
        width=size[0],
        height=size[1],
        source=path.parent.name or "real_dev",
        split=row.get("split") or None,
        is_threat=bool(threat),
        image_id=f"{path.parent.name}/{Path(row['image']).stem}",
    )
    for c, v in vals.items():
        label, _ = mapper(c)
        rec.image_labels[label] = max(v, rec.image_labels.get(label, 0))
    cls = (row.get("class") or "").strip()
    if cls and not mapper.tax.is_background(cls):
        label, _ = mapper(cls)
        if label is None:
            log.error(path, line, f"unknown class {cls!r}; skipped")
            return None
        rec.image_labels[label] = 1
    if row.get("gdxray_series"):
        rec.attrs["series"] = row["gdxray_series"]
    return rec
