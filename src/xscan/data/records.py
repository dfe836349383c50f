"""One record type for a scan, whatever dataset it came from.

Coordinate convention: ``ObjectRecord.box`` is ``(x1, y1, x2, y2)`` float pixels of the
original image, ``0 <= x1 < x2 <= width``, ``0 <= y1 < y2 <= height``.

Readers never drop anything silently: every file or line they could not use, and every value
they had to fix, becomes a :class:`Problem` (file, line, message) in the collection, and a scan
whose annotations could not be read completely is skipped rather than kept with partial labels
(a scan with a missing label would teach a detector that a threat is background).

Numpy and the standard library only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass
class ObjectRecord:
    """One annotated object.

    ``box``: xyxy float pixels. ``label``: canonical class (or the dataset-native name when a
    collection was read with ``taxonomy="native"``). ``original_label``: the name as written in
    the dataset. ``mask``: COCO RLE dict (``{"size": [h, w], "counts": str}``) or ``None``.
    ``occlusion``: fraction 0..1 where known; ``occlusion_level``: 0..3 (OPIXray OL1-OL3 = 1-3).
    """

    box: tuple[float, float, float, float]
    label: str
    original_label: str
    mask: dict[str, Any] | None = None
    occlusion: float | None = None
    occlusion_level: int | None = None
    difficult: bool | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScanRecord:
    """One scan: a false-colour/gray image, or a raw dual-energy pair, with its labels.

    ``image_labels`` maps a class to 1 (present), 0 (absent) or -1 (SIXray's "negative" /
    unknown marker kept as published). ``is_threat`` is ``None`` when the dataset does not say.
    ``subsets`` lists named subsets the scan belongs to (``OL2``, ``hidden``, ``sixray10``).
    """

    image: str | None
    width: int
    height: int
    source: str
    split: str | None = None
    objects: list[ObjectRecord] = field(default_factory=list)
    image_labels: dict[str, int] = field(default_factory=dict)
    is_threat: bool | None = None
    raw_low: str | None = None
    raw_high: str | None = None
    subsets: list[str] = field(default_factory=list)
    image_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.image_id or self.image or self.raw_low or ""


@dataclass(frozen=True)
class Problem:
    """Something a reader could not use or had to fix. ``line`` is 1-based, 0 when unknown."""

    file: str
    line: int
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


class ProblemLog:
    """Collects problems while a dataset is read."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.skipped_records = 0
        self.skipped_objects = 0
        self.fixed_objects = 0

    def error(self, file: str | Path, line: int, message: str) -> None:
        self.items.append(Problem(str(file), int(line), message, ERROR))

    def warn(self, file: str | Path, line: int, message: str) -> None:
        self.items.append(Problem(str(file), int(line), message, WARNING))


@dataclass
class DatasetCollection:
    """Records of one (or several merged) datasets, their class list and what went wrong."""

    records: list[ScanRecord]
    class_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    taxonomy: str = "canonical"
    skipped_records: int = 0
    skipped_objects: int = 0
    fixed_objects: int = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def summary(self) -> dict[str, Any]:
        objs = Counter(o.label for r in self.records for o in r.objects)
        return {
            "source": self.source,
            "records": len(self.records),
            "objects": sum(objs.values()),
            "per_class": dict(sorted(objs.items())),
            "threat_scans": sum(1 for r in self.records if r.is_threat),
            "benign_scans": sum(1 for r in self.records if r.is_threat is False),
            "skipped_records": self.skipped_records,
            "skipped_objects": self.skipped_objects,
            "fixed_objects": self.fixed_objects,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
        }

    def summary_line(self) -> str:
        s = self.summary()
        return (
            f"{s['records']} scans, {s['objects']} objects, {len(self.class_names)} classes; "
            f"skipped {s['skipped_records']} scans and {s['skipped_objects']} objects, fixed "
            f"{s['fixed_objects']} boxes; {s['errors']} errors, {s['warnings']} warnings"
        )


def box_problems(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, list[tuple[str, str]]]:
    """Repair one xyxy box against an image of ``width`` x ``height``.

    Returns the repaired box (``None`` when nothing usable is left) and a list of
    ``(severity, message)``: inverted corners are swapped and boxes past the border clipped
    (warnings); a box with no area inside the image is an error.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    notes: list[tuple[str, str]] = []
    if not all(map(_finite, (x1, y1, x2, y2))):
        return None, [(ERROR, f"box {list(box)} has non-finite coordinates")]
    if x2 < x1 or y2 < y1:
        notes.append((WARNING, f"box {_fmt(box)} has inverted corners; swapped"))
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        notes.append((WARNING, f"box {_fmt(box)} extends past the {width}x{height} image; clipped"))
    if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
        notes.append((ERROR, f"box {_fmt(box)} has no area inside the {width}x{height} image"))
        return None, notes
    return (cx1, cy1, cx2, cy2), notes


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def _fmt(box: Any) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def iou_xyxy(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class RecordBuilder:
    """Adds objects to one scan while logging what was fixed or refused.

    ``ok`` turns false on the first error; the reader then skips the whole scan (never keeps
    it with partial labels).
    """

    def __init__(self, record: ScanRecord, log: ProblemLog, file: str | Path) -> None:
        self.record = record
        self.log = log
        self.file = str(file)
        self.ok = True

    def fail(self, line: int, message: str) -> None:
        self.log.error(self.file, line, message)
        self.ok = False

    def add(self, obj: ObjectRecord, line: int = 0) -> bool:
        """Validate/repair ``obj.box`` and append it; duplicates are dropped with a warning."""
        r = self.record
        box, notes = box_problems(obj.box, r.width, r.height)
        for severity, message in notes:
            if severity == ERROR:
                self.fail(line, message)
            else:
                self.log.warn(self.file, line, message)
        if box is None:
            self.log.skipped_objects += 1
            return False
        if notes:
            self.log.fixed_objects += 1
        obj.box = box
        for other in r.objects:
            if other.label == obj.label and iou_xyxy(other.box, box) > 0.95:
                self.log.warn(self.file, line, f"duplicate {obj.original_label} box {_fmt(box)}")
                self.log.skipped_objects += 1
                return False
        r.objects.append(obj)
        return True


def finish(
    records: list[ScanRecord],
    log: ProblemLog,
    class_names: list[str],
    source: str,
    taxonomy: str,
) -> DatasetCollection:
    return DatasetCollection(
        records=records,
        class_names=class_names,
        problems=list(log.items),
        source=source,
        taxonomy=taxonomy,
        skipped_records=log.skipped_records,
        skipped_objects=log.skipped_objects,
        fixed_objects=log.fixed_objects,
    )


def merge_collections(
    collections: list[DatasetCollection], class_names: list[str]
) -> DatasetCollection:
    """One collection holding all records and problems of ``collections``."""
    out = DatasetCollection(records=[], class_names=list(class_names))
    for c in collections:
        out.records.extend(c.records)
        out.problems.extend(c.problems)
        out.skipped_records += c.skipped_records
        out.skipped_objects += c.skipped_objects
        out.fixed_objects += c.fixed_objects
    out.source = "+".join(c.source for c in collections)
    out.taxonomy = collections[0].taxonomy if collections else "canonical"
    return out


def record_to_dict(r: ScanRecord) -> dict[str, Any]:
    return dataclasses.asdict(r)
