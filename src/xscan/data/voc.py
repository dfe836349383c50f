"""Pascal VOC XML annotations (also SIXray's boxed test subsets).

Layout::

    ROOT/Annotations/<id>.xml
    ROOT/JPEGImages/<id>.jpg
    ROOT/ImageSets/Main/<split>.txt     # optional image-id lists

VOC boxes are 1-based inclusive pixel indices; they are read as ``x1 - 1, y1 - 1, x2, y2``
so that a box covering the whole image is ``0, 0, width, height``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from xscan.data.imagefiles import find_image, probe_image
from xscan.data.records import (
    DatasetCollection,
    ObjectRecord,
    ProblemLog,
    RecordBuilder,
    ScanRecord,
    finish,
)
from xscan.data.taxonomy import LabelMapper


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    truncated: bool
    line: int


@dataclass
class VocFile:
    filename: str
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)


def _num(el: ET.Element | None, tag: str) -> float:
    node = el.find(tag) if el is not None else None
    if node is None or node.text is None:
        raise ValueError(f"missing <{tag}>")
    try:
        return float(node.text.strip())
    except ValueError:
        raise ValueError(f"<{tag}> is not a number: {node.text.strip()!r}") from None


def _object_lines(xml_path: Path) -> list[int]:
    """1-based line numbers of each ``<object>`` tag, for error messages."""
    lines = []
    for i, text in enumerate(xml_path.read_text(errors="replace").splitlines(), 1):
        lines.extend([i] * text.count("<object>"))
    return lines


def parse_voc(xml_path: Path, log: ProblemLog) -> tuple[VocFile | None, bool]:
    """Parse one VOC file. Returns ``(file, complete)``; bad objects are logged as errors."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        log.error(xml_path, e.position[0] if e.position else 0, f"not valid XML ({e})")
        return None, False
    size = root.find("size")
    w = h = None
    if size is not None:
        try:
            w, h = int(_num(size, "width")), int(_num(size, "height"))
        except ValueError:
            w = h = None
    filename = (root.findtext("filename") or xml_path.stem).strip()
    out, complete = VocFile(filename, w, h), True
    lines = _object_lines(xml_path)
    for k, obj in enumerate(root.findall("object")):
        line = lines[k] if k < len(lines) else 0
        name = (obj.findtext("name") or "").strip()
        try:
            if not name:
                raise ValueError("object without <name>")
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"object {name!r} without <bndbox>")
            x1, y1, x2, y2 = (_num(bb, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as e:
            log.error(xml_path, line, str(e))
            complete = False
            continue
        out.objects.append(
            VocObject(
                name,
                (x1 - 1, y1 - 1, x2, y2),
                (obj.findtext("difficult") or "0").strip() == "1",
                (obj.findtext("truncated") or "0").strip() == "1",
                line,
            )
        )
    return out, complete


def add_voc_objects(b: RecordBuilder, vf: VocFile, mapper: LabelMapper, dataset: str) -> None:
    for o in vf.objects:
        label, canonical = mapper(o.name)
        if label is None:
            b.fail(o.line, f"unknown {dataset} class {o.name!r}")
            continue
        b.add(
            ObjectRecord(
                box=o.box,
                label=label,
                original_label=o.name,
                difficult=o.difficult,
                attrs={"canonical": canonical, "truncated": o.truncated},
            ),
            o.line,
        )


def load_voc(
    root: str | Path,
    split: str | None = None,
    taxonomy: str = "canonical",
    verify: bool = False,
    dataset: str = "voc",
) -> DatasetCollection:
    root = Path(root)
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise FileNotFoundError(f"{root}: no VOC XML files (expected Annotations/*.xml)")
    if split is not None:
        lst = root / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise FileNotFoundError(f"{lst}: split list not found")
        ids = set(lst.read_text().split())
        xmls = [p for p in xmls if p.stem in ids]
    img_dirs = [root / "JPEGImages", root / "images", root, ann_dir]
    mapper, log, records = LabelMapper(dataset, taxonomy), ProblemLog(), []
    for xml_path in xmls:
        rec = read_voc_record(xml_path, img_dirs, mapper, log, verify, dataset, split)
        if rec is None:
            log.skipped_records += 1
        else:
            records.append(rec)
    names = mapper.order({o.label for r in records for o in r.objects})
    return finish(records, log, names, str(root), taxonomy)


def read_voc_record(
    xml_path: Path,
    img_dirs: list[Path],
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
    dataset: str,
    split: str | None,
) -> ScanRecord | None:
    vf, complete = parse_voc(xml_path, log)
    if vf is None:
        return None
    image = find_image(vf.filename, img_dirs) or find_image(xml_path.stem, img_dirs)
    if image is None:
        log.error(xml_path, 0, f"image {vf.filename!r} not found; skipped")
        return None
    size = probe_image(image, log, xml_path, 0, verify)
    if size is None:
        return None
    if vf.width and vf.height and (vf.width, vf.height) != size:
        log.warn(xml_path, 0, f"<size> says {vf.width}x{vf.height}, image is {size[0]}x{size[1]}")
    rec = ScanRecord(
        image=str(image),
        width=size[0],
        height=size[1],
        source=dataset,
        split=split,
        image_id=f"{dataset}/{xml_path.stem}",
    )
    b = RecordBuilder(rec, log, xml_path)
    b.ok = complete
    add_voc_objects(b, vf, mapper, dataset)
    if not b.ok:
        return None
    rec.is_threat = any(mapper.is_threat(o.attrs.get("canonical")) for o in rec.objects)
    return rec
