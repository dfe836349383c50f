"""``load_dataset(kind, path, ...)``: one entry point for every reader, and format detection."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xscan.data.records import DatasetCollection, merge_collections
from xscan.data.taxonomy import MODES, LabelMapper


def _readers() -> dict[str, Callable[..., DatasetCollection]]:
    from xscan.data import coco, gdxray, opixray, real_dev, sixray, voc, yolo

    return {
        "sixray": sixray.load_sixray,
        "opixray": opixray.load_opixray,
        "hixray": opixray.load_hixray,
        "pidray": coco.load_pidray,
        "clcxray": coco.load_clcxray,
        "gdxray": gdxray.load_gdxray,
        "coco": coco.load_coco,
        "yolo": yolo.load_yolo,
        "voc": voc.load_voc,
        "xray_real_dev": real_dev.load_real_dev,
        "xscan": coco.load_xscan,
    }


KINDS = (
    "sixray",
    "opixray",
    "hixray",
    "pidray",
    "clcxray",
    "gdxray",
    "coco",
    "yolo",
    "voc",
    "xray_real_dev",
    "xscan",
)


def load_dataset(
    kind: str,
    path: str | Path,
    split: str | None = None,
    taxonomy: str = "canonical",
    **opts: Any,
) -> DatasetCollection:
    """Read a dataset of ``kind`` at ``path`` into a :class:`DatasetCollection`.

    ``taxonomy``: ``"canonical"`` maps class names to xscan's canonical classes, ``"native"``
    keeps the dataset's own names. ``opts``: ``verify=True`` decodes every image (finds
    truncated files); reader-specific options such as GDXray's ``series_classes``.
    """
    readers = _readers()
    if kind not in readers:
        raise ValueError(f"dataset kind {kind!r}: expected one of {list(KINDS)}")
    if taxonomy not in MODES:
        raise ValueError(f"taxonomy: expected one of {MODES}, got {taxonomy!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: dataset path not found")
    reader = readers[kind]
    known = set(inspect.signature(reader).parameters) - {"root", "path", "split", "taxonomy"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"{kind} reader: unknown option(s) {unknown}; known: {sorted(known)}")
    return reader(p, split=split, taxonomy=taxonomy, **opts)


def load_many(
    sources: list[tuple[str, str | Path, str | None]], taxonomy: str = "canonical", **opts: Any
) -> DatasetCollection:
    """Several datasets as one collection with one consistent (canonical-order) class list."""
    parts = [load_dataset(k, p, s, taxonomy, **opts) for k, p, s in sources]
    names = LabelMapper("coco", taxonomy).order({n for c in parts for n in c.class_names})
    return merge_collections(parts, names)


def detect_format(path: str | Path) -> str:
    """The reader kind for ``path`` when the layout is unambiguous; else a ``ValueError``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found")
    if p.is_file():
        if p.suffix == ".json":
            return "coco"
        if p.name == "labels.csv":
            return "xray_real_dev"
        raise ValueError(f"{p}: cannot tell the dataset format of a file; pass --format")
    hits = [kind for kind, test in _DETECTORS if test(p)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"{p}: no known dataset layout found; pass --format ({', '.join(KINDS)})")
    raise ValueError(f"{p}: the layout fits {hits}; pass --format to choose")


def _is_txt_layout(p: Path) -> bool:
    return any((p / s / f"{s}_annotation").is_dir() for s in ("train", "test"))


def _txt_dataset(p: Path) -> str | None:
    """``opixray`` or ``hixray`` from OPIXray's test lists or the class names in use."""
    if any((p / "test").glob("test_knife*.txt")) or any((p / "train").glob("train_knife*.txt")):
        return "opixray"
    from xscan.data.taxonomy import load_taxonomy, normalize_name

    tax = load_taxonomy()
    for s in ("train", "test"):
        for ann in sorted((p / s / f"{s}_annotation").glob("*.txt"))[:20]:
            for line in ann.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 6:
                    name = normalize_name(" ".join(parts[1:-4]))
                    for ds in ("opixray", "hixray"):
                        if name in tax.datasets.get(ds, {}):
                            return ds
    return None


def _is_opixray(p: Path) -> bool:
    return _is_txt_layout(p) and _txt_dataset(p) == "opixray"


def _is_hixray(p: Path) -> bool:
    return _is_txt_layout(p) and _txt_dataset(p) == "hixray"


def _is_xscan(p: Path) -> bool:
    return (p / "annotations.json").is_file() and (p / "manifest.json").is_file()


def _is_pidray(p: Path) -> bool:
    return (p / "annotations" / "xray_train.json").is_file() or any(
        (p / "annotations").glob("xray_test_*.json")
    )


def _is_coco(p: Path) -> bool:
    if _is_xscan(p) or _is_pidray(p):
        return False
    return (p / "annotations.json").is_file() or any((p / "annotations").glob("*.json"))


def _is_gdxray(p: Path) -> bool:
    base = p / "Baggages" if (p / "Baggages").is_dir() else p
    return any((d / "ground_truth.txt").is_file() for d in base.glob("B[0-9][0-9][0-9][0-9]"))


def _is_sixray(p: Path) -> bool:
    return (p / "JPEGImage").is_dir() or any((p / "ImageSet").glob("*/*.csv"))


def _is_voc(p: Path) -> bool:
    return (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir()


def _is_yolo(p: Path) -> bool:
    return (p / "data.yaml").is_file() or (p / "classes.txt").is_file() and (p / "labels").is_dir()


def _is_real_dev(p: Path) -> bool:
    return (p / "labels.csv").is_file() or any(p.glob("*/labels.csv"))


_DETECTORS = (
    ("opixray", _is_opixray),
    ("hixray", _is_hixray),
    ("xscan", _is_xscan),
    ("pidray", _is_pidray),
    ("coco", _is_coco),
    ("gdxray", _is_gdxray),
    ("sixray", _is_sixray),
    ("voc", _is_voc),
    ("yolo", _is_yolo),
    ("xray_real_dev", _is_real_dev),
)
