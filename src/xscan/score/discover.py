"""Streaming, stable discovery of scan files and raw dual-energy pairs.

Inputs are files or folders. Folders are walked recursively, depth first, one directory
listing at a time (memory grows with the largest directory, never with the whole tree), in
sorted name order, so two runs over the same tree see the same sequence. That sequence is
what makes a run resumable: results are written in discovery order, so a resumed run skips
the prefix it already wrote.

A raw dual-energy pair is ``<stem>_low.<ext>`` next to ``<stem>_high.<ext>`` (what
``xscan synth`` writes under ``raw/``); it is one input whose ``path`` is ``<dir>/<stem>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xscan.imageio import IMAGE_SUFFIXES

LOW_TAG, HIGH_TAG = "_low", "_high"


@dataclass(frozen=True)
class InputItem:
    """One input to score.

    ``path`` names the input in results (the file path, or ``<dir>/<stem>`` for a raw pair);
    ``files`` are the file(s) to read: one image, or ``(low, high)`` for a raw pair.
    """

    index: int
    path: str
    files: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "raw_pair" if len(self.files) == 2 else "image"


@dataclass
class DiscoveryStats:
    """What discovery skipped (filled in while iterating) and which folders it must not enter
    (real paths; the run directory, whose overlays would otherwise be scored)."""

    skipped_pairs: int = 0
    skipped_other: int = 0
    exclude: frozenset[str] = frozenset()


def _pair_of(name: str) -> tuple[str, str] | None:
    """``("stem", ".ext")`` when ``name`` is a ``<stem>_low.<ext>`` file name."""
    stem, ext = os.path.splitext(name)
    if ext.lower() in IMAGE_SUFFIXES and stem.endswith(LOW_TAG) and len(stem) > len(LOW_TAG):
        return stem[: -len(LOW_TAG)], ext
    return None


def _walk_dir(
    root: str, raw_pairs: bool, stats: DiscoveryStats
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield ``(path, files)`` under ``root`` in sorted order (directories interleaved)."""
    try:
        with os.scandir(root) as it:
            entries = sorted(
                ((e.name, e.is_dir(follow_symlinks=False)) for e in it), key=lambda t: t[0]
            )
    except OSError as e:
        raise FileNotFoundError(f"{root}: cannot list folder ({e.strerror})") from e
    names = {n for n, is_dir in entries if not is_dir}
    # High halves whose low half is present belong to that pair.
    paired_high: set[str] = set()
    for n in names:
        p = _pair_of(n)
        if p is not None and f"{p[0]}{HIGH_TAG}{p[1]}" in names:
            paired_high.add(f"{p[0]}{HIGH_TAG}{p[1]}")
    for name, is_dir in entries:
        full = os.path.join(root, name)
        if is_dir:
            if not stats.exclude or os.path.realpath(full) not in stats.exclude:
                yield from _walk_dir(full, raw_pairs, stats)
            continue
        if name in paired_high:
            continue
        if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
            stats.skipped_other += 1
            continue
        p = _pair_of(name)
        if p is not None and f"{p[0]}{HIGH_TAG}{p[1]}" in names:
            if raw_pairs:
                yield (
                    os.path.join(root, p[0]),
                    (full, os.path.join(root, f"{p[0]}{HIGH_TAG}{p[1]}")),
                )
            else:
                stats.skipped_pairs += 1
            continue
        yield full, (full,)


def iter_inputs(
    inputs: Iterable[str | Path],
    raw_pairs: bool = True,
    stats: DiscoveryStats | None = None,
) -> Iterator[InputItem]:
    """Yield every input under ``inputs`` (in the order given) with a running ``index``.

    A file named explicitly is scored whatever its suffix (a non-image is reported as a
    failure); inside folders only ``IMAGE_SUFFIXES`` files are taken. With
    ``raw_pairs=False`` (a model that does not read raw dual-energy data) pairs are skipped
    and counted in ``stats.skipped_pairs``.
    """
    stats = stats if stats is not None else DiscoveryStats()
    index = 0
    for inp in inputs:
        p = str(inp)
        if os.path.isdir(p):
            gen: Iterable[tuple[str, tuple[str, ...]]] = _walk_dir(p, raw_pairs, stats)
        elif os.path.exists(p) or os.path.islink(p):
            gen = [(p, (p,))]
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
        for path, files in gen:
            yield InputItem(index, path, files)
            index += 1


def count_inputs(
    inputs: Iterable[str | Path], raw_pairs: bool = True, exclude: frozenset[str] = frozenset()
) -> int:
    """Number of inputs :func:`iter_inputs` yields (a streaming pass; for progress bars)."""
    return sum(1 for _ in iter_inputs(inputs, raw_pairs, DiscoveryStats(exclude=exclude)))
