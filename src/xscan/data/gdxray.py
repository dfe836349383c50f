"""GDXray Baggages: series folders of grayscale 8-bit scans with ``ground_truth.txt``.

Published layout (``ROOT`` = ``Baggages`` or the GDXray folder holding it)::

    ROOT/B0049/B0049_0001.png ...
    ROOT/B0049/ground_truth.txt      # rows: i x1 x2 y1 y2   (note the column order)

``i`` is the image number within the series (written by MATLAB, possibly ``1.0000000e+00``);
the box columns are ``x1 x2 y1 y2``, not ``x1 y1 x2 y2``. A series holds one object class;
the series -> class map is ``gdxray_series`` in the taxonomy YAML, extended or overridden with
``series_classes={"B0046": "knife"}``. A series mapped to ``background`` gives benign scans; a
threat series without ``ground_truth.txt`` gives image-level labels only. ``split`` may name
series (``"B0049,B0050"``); GDXray has no official split.
"""

from __future__ import annotations

import re
from pathlib import Path

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

_SERIES = re.compile(r"^B\d{4}$")


def _series_root(root: Path) -> Path:
    if (root / "Baggages").is_dir():
        root = root / "Baggages"
    if not any(_SERIES.match(p.name) for p in root.iterdir() if p.is_dir()):
        raise FileNotFoundError(f"{root}: expected GDXray series folders B0001, B0049, ...")
    return root


def _read_ground_truth(path: Path, log: ProblemLog) -> tuple[dict[int, list], set[int], bool]:
    """``({image number: [(line, box xyxy)]}, bad image numbers, all lines readable)``."""
    boxes: dict[int, list] = {}
    bad: set[int] = set()
    ok = True
    for i, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = text.replace(",", " ").split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 columns 'i x1 x2 y1 y2', got {len(parts)}")
            n, x1, x2, y1, y2 = (float(v) for v in parts)
        except ValueError as e:
            msg = str(e) if "columns" in str(e) else f"non-numeric value in {text.strip()!r}"
            log.error(path, i, msg)
            # the image number may still be readable: skip only that image
            try:
                bad.add(int(round(float(parts[0]))))
            except (ValueError, IndexError):
                ok = False
            continue
        boxes.setdefault(int(round(n)), []).append((i, (x1, y1, x2, y2)))
    return boxes, bad, ok


def load_gdxray(
    root: str | Path,
    split: str | None = None,
    taxonomy: str = "canonical",
    verify: bool = False,
    series_classes: dict[str, str] | None = None,
) -> DatasetCollection:
    root = _series_root(Path(root))
    mapper, log = LabelMapper("gdxray", taxonomy), ProblemLog()
    classes = {**mapper.tax.gdxray_series, **(series_classes or {})}
    wanted = {s.strip() for s in split.split(",")} if split else None
    records: list[ScanRecord] = []
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and _SERIES.match(p.name)):
        if wanted is not None and sdir.name not in wanted:
            continue
        cls = classes.get(sdir.name)
        if cls is None:
            if wanted is not None:
                raise ValueError(
                    f"{sdir}: no class known for series {sdir.name}; pass series_classes"
                )
            log.warn(sdir, 0, "series not in the gdxray_series class map; skipped")
            continue
        records += _read_series(sdir, cls, mapper, log, verify)
    names = mapper.order(
        {o.label for r in records for o in r.objects} | {k for r in records for k in r.image_labels}
    )
    return finish(records, log, names, str(root), taxonomy)


def _read_series(
    sdir: Path, cls: str, mapper: LabelMapper, log: ProblemLog, verify: bool
) -> list[ScanRecord]:
    gt = sdir / "ground_truth.txt"
    background = mapper.tax.is_background(cls)
    label, canonical = (None, None) if background else mapper(cls)
    if not background and label is None:
        log.error(sdir, 0, f"series class {cls!r} is not a known GDXray class; series skipped")
        return []
    boxes, bad, complete = _read_ground_truth(gt, log) if gt.is_file() else ({}, set(), True)
    if not complete:
        log.error(gt, 0, "unreadable image numbers: series skipped")
        log.skipped_records += len(list_images(sdir))
        return []
    out = []
    images = list_images(sdir)
    numbers = {}
    for img in images:
        m = re.search(r"_(\d+)$", img.stem)
        if m:
            numbers[int(m.group(1))] = img
    for n in sorted(set(boxes) - set(numbers)):
        log.error(gt, boxes[n][0][0], f"image {sdir.name}_{n:04d} not found; its boxes skipped")
        log.skipped_records += 1
    for n, img in sorted(numbers.items()):
        if n in bad:
            log.skipped_records += 1
            continue
        size = probe_image(img, log, img, 0, verify)
        if size is None:
            log.skipped_records += 1
            continue
        rec = ScanRecord(
            image=str(img),
            width=size[0],
            height=size[1],
            source="gdxray",
            image_id=f"gdxray/{img.stem}",
            attrs={"series": sdir.name},
        )
        b = RecordBuilder(rec, log, gt)
        for line, box in boxes.get(n, []):
            b.add(
                ObjectRecord(
                    box=box, label=label, original_label=cls, attrs={"canonical": canonical}
                ),
                line,
            )
        if not b.ok:
            log.skipped_records += 1
            continue
        if background:
            rec.is_threat = False
        else:
            if gt.is_file() and not rec.objects:
                log.warn(img, 0, f"no {cls} box in {gt.name}: image-level label only")
            rec.image_labels[label] = 1
            rec.is_threat = mapper.is_threat(canonical)
        out.append(rec)
    return out
