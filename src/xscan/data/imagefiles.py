"""Locating and sizing the image files an annotation refers to.

Sizes come from the file header (:func:`xscan.imageio.read_image_size`) so that reading a
large dataset does not decode every scan; ``verify=True`` (used by ``xscan data check``)
decodes each image fully to find truncated or corrupt files.
"""

from __future__ import annotations

from pathlib import Path

from xscan.data.records import ProblemLog
from xscan.imageio import IMAGE_SUFFIXES, ImageReadError, read_image, read_image_size


def probe_image(
    path: Path, log: ProblemLog, ann_file: str | Path, line: int = 0, verify: bool = False
) -> tuple[int, int] | None:
    """``(width, height)`` of ``path``; ``None`` (with an error logged) when it is unusable."""
    try:
        if verify:
            img = read_image(path)
            return int(img.shape[1]), int(img.shape[0])
        return read_image_size(path)
    except ImageReadError as e:
        log.error(ann_file, line, f"image {e}")
        return None


def find_image(name: str, dirs: list[Path]) -> Path | None:
    """The first existing ``dir/name`` (also trying image suffixes when ``name`` has none)."""
    stem_only = Path(name).suffix.lower() not in IMAGE_SUFFIXES
    for d in dirs:
        p = d / name
        if p.is_file():
            return p
        if stem_only:
            for suf in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
                q = d / f"{name}{suf}"
                if q.is_file():
                    return q
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
