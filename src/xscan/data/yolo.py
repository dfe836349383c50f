"""YOLO txt datasets (Ultralytics / Darknet layout).

Layouts::

    ROOT/data.yaml                    # names: [a, b] or {0: a, 1: b}; train: images/train ...
    ROOT/images/<split>/x.jpg  +  ROOT/labels/<split>/x.txt
    ROOT/<split>/images/x.jpg  +  ROOT/<split>/labels/x.txt
    ROOT/images/x.jpg + ROOT/labels/x.txt + ROOT/classes.txt   (one name a line)

Label lines: ``class cx cy w h`` normalised to [0, 1] (or ``class x1 y1 x2 y2 ...`` polygon
points, whose bounding box is used). An empty label file is a background scan (the YOLO
convention); a missing one too, with a warning.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from xscan.data.imagefiles import list_images, probe_image
from xscan.data.records import (
    DatasetCollection,
    ObjectRecord,
    ProblemLog,
    RecordBuilder,
    ScanRecord,
    finish,
)
from xscan.data.taxonomy import LabelMapper

SPLIT_NAMES = ("train", "val", "valid", "test")


def read_names(root: Path) -> tuple[list[str], dict]:
    """Class names (index order) and the data YAML (empty when ``classes.txt`` is used)."""
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        p = root / name
        if p.is_file():
            data = yaml.safe_load(p.read_text()) or {}
            names = data.get("names")
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names, key=int)]
            if not isinstance(names, list) or not names:
                raise ValueError(f"{p}: names: expected a list or {{index: name}} mapping")
            return [str(n) for n in names], data
    p = root / "classes.txt"
    if p.is_file():
        return [t.strip() for t in p.read_text().splitlines() if t.strip()], {}
    raise FileNotFoundError(f"{root}: no data.yaml or classes.txt with the class names")


def _labels_dir(img_dir: Path) -> Path:
    parts = list(img_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return img_dir.parent / "labels"


def find_split_dirs(root: Path, data: dict, split: str | None) -> dict[str, Path]:
    """``{split: image folder}``."""
    base = (
        root / data["path"] if data.get("path") and not Path(data["path"]).is_absolute() else root
    )
    found: dict[str, Path] = {}
    for s in SPLIT_NAMES:
        if isinstance(data.get(s), str):
            d = Path(data[s]) if Path(data[s]).is_absolute() else base / data[s]
            if d.is_dir():
                found[s] = d
    if not found:
        for s in SPLIT_NAMES:
            for d in (root / "images" / s, root / s / "images"):
                if d.is_dir():
                    found[s] = d
    if not found and (root / "images").is_dir():
        found[""] = root / "images"
    if not found:
        raise FileNotFoundError(f"{root}: no images/ folder (YOLO layout)")
    if split is not None:
        if split not in found:
            raise ValueError(f"{root}: split {split!r} not found (have {sorted(found)})")
        return {split: found[split]}
    return found


def _parse(text: str, w: int, h: int, n_classes: int) -> tuple[int, tuple[float, ...]]:
    parts = text.split()
    try:
        cls = int(parts[0])
        vals = [float(v) for v in parts[1:]]
    except (ValueError, IndexError):
        raise ValueError(f"expected 'class cx cy w h', got {text.strip()!r}") from None
    if not 0 <= cls < n_classes:
        raise ValueError(f"class index {cls} out of range 0..{n_classes - 1}")
    if len(vals) == 4:
        cx, cy, bw, bh = vals
        return cls, ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
    if len(vals) >= 6 and len(vals) % 2 == 0:
        xs, ys = vals[0::2], vals[1::2]
        return cls, (min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h)
    raise ValueError(f"expected 4 box values or polygon points, got {len(vals)} values")


def load_yolo(
    root: str | Path,
    split: str | None = None,
    taxonomy: str = "canonical",
    verify: bool = False,
    dataset: str = "yolo",
) -> DatasetCollection:
    root = Path(root)
    names, data = read_names(root)
    mapper, log = LabelMapper(dataset, taxonomy), ProblemLog()
    mapped = [mapper(n) for n in names]
    for i, (n, (label, _)) in enumerate(zip(names, mapped, strict=True)):
        if label is None:
            log.error(root, 0, f"class {i} {n!r} is not a known class; scans using it skipped")
    records = []
    for s, img_dir in find_split_dirs(root, data, split).items():
        lbl_dir = _labels_dir(img_dir)
        for img in list_images(img_dir):
            rec = _read_one(
                img,
                lbl_dir / f"{img.stem}.txt",
                s or None,
                names,
                mapped,
                mapper,
                log,
                verify,
                dataset,
            )
            if rec is None:
                log.skipped_records += 1
            else:
                records.append(rec)
    out_names = mapper.order(
        {o.label for r in records for o in r.objects} | {m[0] for m in mapped if m[0]}
    )
    return finish(records, log, out_names, str(root), taxonomy)


def _read_one(
    img: Path,
    lbl: Path,
    split: str | None,
    names: list[str],
    mapped: list,
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
    dataset: str,
) -> ScanRecord | None:
    size = probe_image(img, log, img, 0, verify)
    if size is None:
        return None
    rec = ScanRecord(
        image=str(img),
        width=size[0],
        height=size[1],
        source=dataset,
        split=split,
        image_id=f"{dataset}/{split or ''}/{img.stem}",
    )
    b = RecordBuilder(rec, log, lbl)
    if not lbl.is_file():
        log.warn(img, 0, f"no label file {lbl}; read as a scan with no objects")
    else:
        for i, text in enumerate(lbl.read_text(errors="replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                cls, box = _parse(text, size[0], size[1], len(names))
            except ValueError as e:
                b.fail(i, str(e))
                continue
            label, canonical = mapped[cls]
            if label is None:
                b.fail(i, f"unknown class {names[cls]!r}")
                continue
            b.add(
                ObjectRecord(
                    box=box, label=label, original_label=names[cls], attrs={"canonical": canonical}
                ),
                i,
            )
    if not b.ok:
        return None
    rec.is_threat = any(mapper.is_threat(o.attrs.get("canonical")) for o in rec.objects)
    return rec
