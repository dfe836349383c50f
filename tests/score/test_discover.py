from __future__ import annotations

import os

import pytest

from xscan.score.discover import DiscoveryStats, count_inputs, iter_inputs


def _touch(root, *names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_recursive_sorted_stable_with_pairs(tmp_path):
    _touch(
        tmp_path,
        "b.png",
        "a.JPG",
        "notes.txt",
        "sub/c.tif",
        "sub/d.tiff",
        "a2/e.bmp",
        "raw/0001_low.png",
        "raw/0001_high.png",
        "raw/0002_low.png",  # no high half: a plain image
        "x.jpeg",
    )
    items = list(iter_inputs([tmp_path]))
    rel = [(i.index, i.path.removeprefix(str(tmp_path) + "/"), i.kind) for i in items]
    assert rel == [
        (0, "a.JPG", "image"),
        (1, "a2/e.bmp", "image"),
        (2, "b.png", "image"),
        (3, "raw/0001", "raw_pair"),
        (4, "raw/0002_low.png", "image"),
        (5, "sub/c.tif", "image"),
        (6, "sub/d.tiff", "image"),
        (7, "x.jpeg", "image"),
    ]
    assert items[3].files == (
        str(tmp_path / "raw/0001_low.png"),
        str(tmp_path / "raw/0001_high.png"),
    )
    assert [i.path for i in iter_inputs([tmp_path])] == [i.path for i in items]
    assert count_inputs([tmp_path]) == 8


def test_pairs_skipped_for_non_raw_models_and_explicit_files(tmp_path):
    _touch(tmp_path, "d/0001_low.png", "d/0001_high.png", "d/k.png", "other.dat")
    stats = DiscoveryStats()
    items = list(
        iter_inputs([tmp_path / "d", tmp_path / "other.dat"], raw_pairs=False, stats=stats)
    )
    assert [i.path for i in items] == [str(tmp_path / "d/k.png"), str(tmp_path / "other.dat")]
    assert [i.index for i in items] == [0, 1]
    assert stats.skipped_pairs == 1


def test_missing_input_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list(iter_inputs([tmp_path / "nope"]))


def test_excluded_folder_is_not_entered(tmp_path):
    _touch(tmp_path, "a.png", "run/overlays/0000000_a.jpg", "z/b.png")
    stats = DiscoveryStats(exclude=frozenset({os.path.realpath(tmp_path / "run")}))
    assert [i.path for i in iter_inputs([tmp_path], stats=stats)] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "z/b.png"),
    ]
