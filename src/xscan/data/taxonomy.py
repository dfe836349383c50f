"""The canonical class taxonomy: dataset class names in any spelling -> canonical classes.

The mapping lives in ``taxonomy.yaml`` (versioned) beside this module. ``mode="canonical"``
maps every name through it; ``mode="native"`` keeps each dataset's own class names (spelling
normalised to the dataset's declared name when one matches) and still uses the canonical
class to decide whether an object is a threat.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TAXONOMY_PATH = Path(__file__).with_name("taxonomy.yaml")
MODES = ("canonical", "native")


def normalize_name(name: str) -> str:
    """Case-, space-, hyphen- and underscore-insensitive key for a class name."""
    return re.sub(r"[\s\-_]+", "_", str(name).strip().lower()).strip("_")


@dataclass(frozen=True)
class Taxonomy:
    version: int
    classes: tuple[str, ...]
    threat_classes: frozenset[str]
    aliases: dict[str, str]
    datasets: dict[str, dict[str, str]]
    native_names: dict[str, dict[str, str]]
    background: frozenset[str]
    gdxray_series: dict[str, str] = field(default_factory=dict)

    def canonical(self, name: str, dataset: str | None = None) -> str | None:
        """Canonical class of ``name`` (as spelled in ``dataset``), or ``None`` if unknown."""
        key = normalize_name(name)
        if dataset and key in self.datasets.get(dataset, {}):
            return self.datasets[dataset][key]
        if key in self.aliases:
            return self.aliases[key]
        if key in self.classes:
            return key
        return None

    def native(self, name: str, dataset: str | None = None) -> str:
        """The dataset's declared spelling of ``name`` (the name itself when not declared)."""
        key = normalize_name(name)
        return self.native_names.get(dataset or "", {}).get(key, str(name).strip())

    def is_background(self, name: str) -> bool:
        return normalize_name(name) in self.background

    def is_threat(self, canonical: str) -> bool:
        return canonical in self.threat_classes

    def order(self, names: set[str] | list[str]) -> list[str]:
        """Sort class names: canonical classes in canonical order, then others alphabetically."""
        rank = {c: i for i, c in enumerate(self.classes)}
        return sorted(set(names), key=lambda c: (rank.get(c, len(rank)), c))


def _validate(data: dict, source: str) -> None:
    for key in ("version", "classes", "aliases", "datasets"):
        if key not in data:
            raise ValueError(f"{source}: missing top-level key {key!r}")
    if not isinstance(data["version"], int):
        raise ValueError(f"{source}: version: expected an integer")
    classes = set(data["classes"])
    for alias, target in data["aliases"].items():
        if target not in classes:
            raise ValueError(f"{source}: aliases.{alias}: {target!r} is not a canonical class")
    for ds, mapping in data["datasets"].items():
        for name, target in mapping.items():
            if target not in classes:
                raise ValueError(
                    f"{source}: datasets.{ds}.{name}: {target!r} is not a canonical class"
                )


@functools.lru_cache(maxsize=4)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML (default: the packaged one)."""
    p = Path(path) if path else TAXONOMY_PATH
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise FileNotFoundError(f"{p}: cannot read taxonomy ({e.strerror})") from e
    _validate(data, str(p))
    classes = data["classes"]
    datasets = {
        ds: {normalize_name(k): v for k, v in m.items()} for ds, m in data["datasets"].items()
    }
    native = {ds: {normalize_name(k): str(k) for k in m} for ds, m in data["datasets"].items()}
    return Taxonomy(
        version=int(data["version"]),
        classes=tuple(classes),
        threat_classes=frozenset(c for c, v in classes.items() if (v or {}).get("threat")),
        aliases={normalize_name(k): v for k, v in data["aliases"].items()},
        datasets=datasets,
        native_names=native,
        background=frozenset(normalize_name(b) for b in data.get("background", [])),
        gdxray_series=dict(data.get("gdxray_series", {})),
    )


class LabelMapper:
    """Maps one dataset's names to the labels of a collection (canonical or native)."""

    def __init__(self, dataset: str, mode: str = "canonical", taxonomy: Taxonomy | None = None):
        if mode not in MODES:
            raise ValueError(f"taxonomy: expected one of {MODES}, got {mode!r}")
        self.dataset = dataset
        self.mode = mode
        self.tax = taxonomy or load_taxonomy()

    def __call__(self, name: str) -> tuple[str | None, str | None]:
        """``(label, canonical)`` for a dataset name; ``label`` is ``None`` when unknown.

        In native mode an unknown name is kept as written (it is the dataset's own class);
        its canonical class is then ``None`` and it does not count as a threat.
        """
        canonical = self.tax.canonical(name, self.dataset)
        if self.mode == "native":
            return self.tax.native(name, self.dataset), canonical
        return canonical, canonical

    def is_threat(self, canonical: str | None) -> bool:
        return canonical is not None and self.tax.is_threat(canonical)

    def order(self, names: set[str] | list[str]) -> list[str]:
        return self.tax.order(names)
