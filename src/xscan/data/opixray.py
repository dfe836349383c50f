"""OPIXray and HiXray: one annotation text file per image.

Published layout (``ROOT`` = ``OPIXray_Dataset`` or the HiXray folder)::

    ROOT/train/train_image/009000.jpg
    ROOT/train/train_annotation/009000.txt     # lines: 009000.jpg Straight_Knife 281 232 445 380
    ROOT/train/train_knife.txt                 # OPIXray: image list of the split
    ROOT/test/test_image/, ROOT/test/test_annotation/
    ROOT/test/test_knife-1.txt .. -3.txt       # OPIXray occlusion levels OL1-OL3

Each annotation line is ``image_name class x1 y1 x2 y2`` (pixels). Every published scan holds
at least one item, so an empty annotation file is reported and its scan skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from xscan.data.imagefiles import find_image, list_images, probe_image
from xscan.data.records import (
    DatasetCollection,
    ObjectRecord,
    ProblemLog,
    RecordBuilder,
    ScanRecord,
    finish,
)
from xscan.data.taxonomy import LabelMapper

SPLITS = ("train", "test")
_OL = re.compile(r"^(?:test/)?OL([123])$", re.IGNORECASE)


def _split_dirs(root: Path) -> dict[str, Path]:
    """``{split: folder}``; ROOT may be the dataset root or one split folder."""
    found = {s: root / s for s in SPLITS if (root / s / f"{s}_annotation").is_dir()}
    if found:
        return found
    for s in SPLITS:
        if (root / f"{s}_annotation").is_dir():
            return {s: root}
    raise FileNotFoundError(
        f"{root}: expected train/train_annotation or test/test_annotation folders "
        "(OPIXray/HiXray layout)"
    )


def _occlusion_levels(split_dir: Path, split: str) -> dict[str, int]:
    """OPIXray test lists ``test_knife-N.txt`` -> ``{image stem: N}``."""
    levels: dict[str, int] = {}
    for n in (1, 2, 3):
        p = split_dir / f"{split}_knife-{n}.txt"
        if p.is_file():
            for name in p.read_text().split():
                levels[Path(name).stem] = n
    return levels


def _parse_line(text: str) -> tuple[str, str, list[float]]:
    parts = text.split()
    if len(parts) < 6:
        raise ValueError(f"expected 'image class x1 y1 x2 y2', got {text.strip()!r}")
    # class names never contain spaces in OPIXray/HiXray, but be lenient: all middle tokens
    name = " ".join(parts[1:-4])
    try:
        coords = [float(v) for v in parts[-4:]]
    except ValueError:
        raise ValueError(f"non-numeric box in {text.strip()!r}") from None
    return parts[0], name, coords


def _read_one(
    ann: Path,
    image: Path,
    split: str,
    dataset: str,
    mapper: LabelMapper,
    log: ProblemLog,
    verify: bool,
    level: int | None,
) -> ScanRecord | None:
    size = probe_image(image, log, ann, 0, verify)
    if size is None:
        return None
    rec = ScanRecord(
        image=str(image),
        width=size[0],
        height=size[1],
        source=dataset,
        split=split,
        image_id=f"{dataset}/{split}/{image.stem}",
    )
    if level is not None:
        rec.subsets.append(f"OL{level}")
    b = RecordBuilder(rec, log, ann)
    lines = ann.read_text(errors="replace").splitlines()
    if not any(t.strip() for t in lines):
        b.fail(0, f"empty annotation file (every {dataset} scan holds at least one item)")
    for i, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            name, cls, coords = _parse_line(text)
        except ValueError as e:
            b.fail(i, str(e))
            continue
        if Path(name).stem != image.stem:
            log.warn(ann, i, f"line names image {name!r}, file is for {image.name}")
        label, canonical = mapper(cls)
        if label is None:
            b.fail(i, f"unknown {dataset} class {cls!r}")
            continue
        b.add(
            ObjectRecord(
                box=tuple(coords),
                label=label,
                original_label=cls,
                occlusion_level=level,
                attrs={"canonical": canonical},
            ),
            i,
        )
    if not b.ok:
        return None
    rec.is_threat = any(mapper.is_threat(o.attrs.get("canonical")) for o in rec.objects)
    return rec


def load_txt_dataset(
    root: str | Path,
    dataset: str,
    split: str | None = None,
    taxonomy: str = "canonical",
    verify: bool = False,
) -> DatasetCollection:
    """Read an OPIXray/HiXray-style folder. ``split``: ``train``, ``test``, or ``OL1``..``OL3``
    (``test/OL2``) for an OPIXray occlusion level; ``None`` reads every split present."""
    root = Path(root)
    dirs = _split_dirs(root)
    want_level = None
    if split is not None:
        m = _OL.match(split)
        if m:
            want_level, split = int(m.group(1)), "test"
        if split not in dirs:
            raise ValueError(f"{root}: split {split!r} not found (have {sorted(dirs)})")
        dirs = {split: dirs[split]}
    mapper = LabelMapper(dataset, taxonomy)
    log = ProblemLog()
    records: list[ScanRecord] = []
    for s, d in dirs.items():
        levels = _occlusion_levels(d, s)
        ann_dir, img_dir = d / f"{s}_annotation", d / f"{s}_image"
        anns = {p.stem: p for p in sorted(ann_dir.glob("*.txt"))}
        for img in list_images(img_dir) if want_level is None else []:
            if img.stem not in anns:
                log.error(img, 0, "image has no annotation file; skipped")
                log.skipped_records += 1
        for stem, ann in anns.items():
            level = levels.get(stem)
            if want_level is not None and level != want_level:
                continue
            image = find_image(stem, [img_dir])
            if image is None:
                log.error(ann, 0, f"image {stem}.* not found in {img_dir}; skipped")
                log.skipped_records += 1
                continue
            rec = _read_one(ann, image, s, dataset, mapper, log, verify, level)
            if rec is None:
                log.skipped_records += 1
            else:
                records.append(rec)
    names = mapper.order({o.label for r in records for o in r.objects})
    return finish(records, log, names, str(root), taxonomy)


def load_opixray(root, split=None, taxonomy="canonical", verify=False) -> DatasetCollection:
    return load_txt_dataset(root, "opixray", split, taxonomy, verify)


def load_hixray(root, split=None, taxonomy="canonical", verify=False) -> DatasetCollection:
    return load_txt_dataset(root, "hixray", split, taxonomy, verify)
