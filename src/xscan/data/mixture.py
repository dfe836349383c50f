"""A weighted mixture of offline datasets, online synthetic scans and online TIP.

``build_dataset(cfg.data.train, spec, train=True, samples_per_epoch=..., seed=cfg.seed,
augment=cfg.data.augment)`` returns a torch ``Dataset`` whose items are those of
:mod:`xscan.data.torch_dataset`. Source kinds (:class:`xscan.config.DataSource`):

* any reader kind with ``path`` (``sixray``, ``pidray``, ``coco``, ``xscan``, ...); ``params``:
  ``taxonomy`` and reader options (``series_classes``);
* ``synth``: scans generated online; ``params``: ``kind`` (baggage|cargo),
  ``threat_fraction``, ``clutter``, ``size`` ``[h, w]`` (default ``spec.input_size``);
* ``tip``: threats projected into benign scans; ``params``: ``backgrounds`` (a folder, with
  ``pattern`` such as ``N*.jpg``, or ``{kind, path, split}`` of a reader, benign scans only),
  ``threats`` (``{kind: synth, categories, per_category, scanner}`` or ``{kind, path, split,
  labels}`` of a boxed dataset), and the placement keys of :data:`xscan.data.tip.TIP_DEFAULTS`.

Each item ``i`` of epoch ``e`` is drawn from ``np.random.default_rng(item_seed(seed, e, i))``:
the source by weight, then a record or an online seed. Nothing depends on call order or on
the worker process. With ``train=False`` the epoch is fixed at 0 and there is no augmentation,
so validation sees the same items every epoch; a validation mixture of offline datasets only
enumerates their records once, in order.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from xscan.config import DataSource
from xscan.data.registry import KINDS, load_dataset
from xscan.data.sample import Sample, load_record
from xscan.data.taxonomy import LabelMapper
from xscan.data.tip import (
    TIP_DEFAULTS,
    ThreatLibrary,
    TipGenerator,
    benign_backgrounds,
    threat_classes,
)
from xscan.data.torch_dataset import encode_sample, item_seed
from xscan.spec import ModelSpec

log = logging.getLogger(__name__)
SYNTH_KEYS = {"kind", "threat_fraction", "clutter", "size", "noise", "threats_per_scan"}


# A cache may take at most this share of the machine's physical memory.
CACHE_MAX_SHARE = 0.5


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


class OfflineSource:
    """Records of a dataset on disk. With ``cache``, each decoded image is kept in memory
    after its first read (read-only, so nothing downstream can alter the cached copy), and
    later epochs skip the file read and decode; the cache is left off, with a warning, when
    the decoded images would take more than :data:`CACHE_MAX_SHARE` of physical memory."""

    def __init__(
        self, records: list, modality: str, masks: bool, name: str, cache: bool = False
    ) -> None:
        if not records:
            raise ValueError(f"data source {name}: no usable scans")
        self.records, self.modality, self.masks, self.name = records, modality, masks, name
        self._images: dict[int, np.ndarray] | None = None
        if cache:
            # decoded bytes per pixel: a float32 low/high pair, or at most 16-bit RGB
            per_px = 8 if modality == "raw_dual" else 6
            need = sum(int(r.width) * int(r.height) * per_px for r in records)
            mem = _physical_memory()
            if mem is not None and need > CACHE_MAX_SHARE * mem:
                log.warning(
                    "data source %s: not caching images: about %.1f GB decoded, more than "
                    "%.0f%% of this machine's %.1f GB",
                    name,
                    need / 1e9,
                    100 * CACHE_MAX_SHARE,
                    mem / 1e9,
                )
            else:
                self._images = {}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, i: int) -> Sample:
        cached = self._images.get(i) if self._images is not None else None
        sample = load_record(self.records[i], self.modality, with_masks=self.masks, image=cached)
        if self._images is not None and cached is None:
            sample.image.flags.writeable = False
            self._images[i] = sample.image
        return sample

    def draw(self, rng: np.random.Generator) -> Sample:
        return self.get(int(rng.integers(len(self.records))))


class SynthSource:
    def __init__(self, params: dict[str, Any], spec: ModelSpec) -> None:
        from xscan.synth.generator import SynthOptions, threats_range

        unknown = sorted(set(params) - SYNTH_KEYS)
        if unknown:
            raise ValueError(
                f"synth source params: unknown key(s) {unknown}; known: {sorted(SYNTH_KEYS)}"
            )
        self.kind = params.get("kind", "baggage")
        self.size = tuple(int(v) for v in params.get("size", spec.input_size))
        self.options = SynthOptions(
            threat_fraction=float(params.get("threat_fraction", 0.5)),
            clutter=params.get("clutter", "medium"),
            noise=bool(params.get("noise", True)),
            threats_per_scan=threats_range(
                params.get("threats_per_scan"), "synth source threats_per_scan"
            ),
        )
        self.options.validate()
        self.modality = spec.modality
        self.name = f"synth:{self.kind}"

    def draw(self, rng: np.random.Generator) -> Sample:
        from xscan.synth.generator import generate_scan

        seed = int(rng.integers(0, 2**31 - 1))
        scan = generate_scan(self.kind, self.size, seed, self.options)
        if self.modality == "raw_dual":
            image = np.stack([scan.t_low, scan.t_high], axis=-1).astype(np.float32)
        elif self.modality == "gray":
            image = scan.t_high.astype(np.float32)
        else:
            image = scan.rgb
        objs = scan.objects
        return Sample(
            image,
            np.array([o.box for o in objs], np.float32).reshape(-1, 4),
            [o.category for o in objs],
            [o.mask for o in objs],
            bool(scan.has_threat),
            f"synth:{self.kind}#{seed}",
        )


class TipSource:
    def __init__(self, params: dict[str, Any], spec: ModelSpec, seed: int) -> None:
        params = dict(params)
        raw = spec.modality == "raw_dual"
        self.backgrounds = _backgrounds(params.pop("backgrounds", None), params.pop("pattern", "*"))
        library = _library(params.pop("threats", None), spec, seed, raw)
        threat_labels = threat_classes(spec.class_names)
        # backgrounds are letterboxed to the input later: project at twice that size at most
        params.setdefault("max_side", 2 * max(spec.input_size))
        self.gen = TipGenerator(
            self.backgrounds, library, params, raw=raw, threat_labels=threat_labels or None
        )
        self.name = "tip"

    def draw(self, rng: np.random.Generator) -> Sample:
        return self.gen.sample(int(rng.integers(0, 2**31 - 1)))


def _backgrounds(spec_: Any, pattern: str) -> list:
    if spec_ is None:
        raise ValueError(
            "tip source: params.backgrounds is required (a folder of benign scans "
            "or {kind, path, split})"
        )
    if isinstance(spec_, str):
        return benign_backgrounds(spec_, pattern=pattern)
    return benign_backgrounds(spec_["path"], spec_["kind"], spec_.get("split"))


def _library(spec_: Any, spec: ModelSpec, seed: int, raw: bool) -> ThreatLibrary:
    spec_ = dict(spec_ or {"kind": "synth"})
    kind = spec_.pop("kind", "synth")
    if kind == "synth":
        from xscan.synth.threats import THREAT_BUILDERS

        cats = spec_.get("categories") or [c for c in spec.class_names if c in THREAT_BUILDERS]
        if not cats:
            raise ValueError(
                "tip threats: none of the model's classes can be rendered; "
                f"renderable: {sorted(THREAT_BUILDERS)}"
            )
        return ThreatLibrary.from_synth(
            cats, int(spec_.get("per_category", 8)), seed, spec_.get("scanner", "baggage")
        )
    col = load_dataset(kind, spec_["path"], spec_.get("split"))
    labels = spec_.get("labels") or list(spec.class_names)
    return ThreatLibrary.from_records(
        col.records, labels, int(spec_.get("max_patches", 500)), raw=raw
    )


def make_source(
    src: DataSource, spec: ModelSpec, seed: int, masks: bool, cache_images: bool = False
):
    if src.kind == "synth":
        return SynthSource(src.params, spec)
    if src.kind == "tip":
        bad = sorted(set(src.params) - set(TIP_DEFAULTS) - {"backgrounds", "pattern", "threats"})
        if bad:
            raise ValueError(f"tip source params: unknown key(s) {bad}")
        return TipSource(src.params, spec, seed)
    if src.kind not in KINDS:
        raise ValueError(
            f"data source kind {src.kind!r}: expected synth, tip or one of {list(KINDS)}"
        )
    if not src.path:
        raise ValueError(f"data source {src.kind}: path is required")
    opts = dict(src.params)
    col = load_dataset(
        src.kind, src.path, src.split, taxonomy=opts.pop("taxonomy", "canonical"), **opts
    )
    log.info("%s %s: %s", src.kind, src.path, col.summary_line())
    name = f"{src.kind}:{Path(src.path).name}"
    return OfflineSource(col.records, spec.modality, masks, name, cache=cache_images)


class MixtureDataset(Dataset):
    """See the module docstring. ``set_epoch(e)`` before each training epoch."""

    def __init__(
        self,
        sources: list,
        weights: Sequence[float],
        spec: ModelSpec,
        transform: Any,
        train: bool,
        samples_per_epoch: int,
        seed: int,
        return_masks: bool = False,
    ):
        w = np.asarray(weights, np.float64)
        if len(sources) == 0 or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"data sources: need at least one source with a positive weight, "
                f"got weights {list(weights)}"
            )
        self.sources, self.p = sources, w / w.sum()
        self.spec, self.transform, self.train = spec, transform, train
        self.seed, self.epoch, self.return_masks = int(seed), 0, return_masks
        self.class_index = {c: i for i, c in enumerate(spec.class_names)}
        self.plan: list[tuple[int, int]] | None = None
        if not train and all(isinstance(s, OfflineSource) for s in sources):
            self.plan = [(k, i) for k, s in enumerate(sources) for i in range(len(s))]
        self.length = len(self.plan) if self.plan is not None else int(samples_per_epoch)
        self.dropped_objects: Counter = Counter()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch) if self.train else 0

    @property
    def records(self) -> list | None:
        """The scan record behind each item, in order, for an evaluation mixture of offline
        datasets (``None`` otherwise: items are drawn)."""
        if self.plan is None:
            return None
        return [self.sources[k].records[i] for k, i in self.plan]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        s = item_seed(self.seed, self.epoch if self.train else 0, index)
        rng = np.random.default_rng(s)
        if self.plan is not None:
            k, i = self.plan[index]
            sample = self.sources[k].get(i)
        else:
            k = int(rng.choice(len(self.sources), p=self.p))
            sample = self.sources[k].draw(rng)
        image, target, dropped = encode_sample(
            sample,
            self.spec,
            self.class_index,
            self.transform if self.train else None,
            int(rng.integers(0, 2**31 - 1)),
            index,
            self.return_masks,
        )
        if dropped:
            self.dropped_objects[self.sources[k].name] += dropped
        target["source"] = self.sources[k].name
        return image, target


def build_dataset(
    sources: list[DataSource],
    spec: ModelSpec,
    *,
    train: bool,
    samples_per_epoch: int,
    seed: int,
    augment: dict[str, Any] | None,
    return_masks: bool = False,
    cache_images: bool = False,
) -> MixtureDataset:
    """The weighted mixture of ``sources`` for ``spec`` (see the module docstring);
    ``cache_images`` keeps the decoded images of offline sources in memory
    (:class:`OfflineSource`)."""
    from xscan.data.augment import build_augment

    transform = build_augment(augment, spec, masks=return_masks) if train else None
    built = [
        make_source(s, spec, seed + k, return_masks, cache_images) for k, s in enumerate(sources)
    ]
    return MixtureDataset(
        built,
        [s.weight for s in sources],
        spec,
        transform,
        train,
        samples_per_epoch,
        seed,
        return_masks,
    )


def class_names_for(sources: list[DataSource], taxonomy: str = "canonical") -> list[str]:
    """One consistent class list (canonical order) over the offline sources of a config."""
    names: set[str] = set()
    for s in sources:
        if s.kind in KINDS and s.path:
            names |= set(load_dataset(s.kind, s.path, s.split, taxonomy=taxonomy).class_names)
    return LabelMapper("coco", taxonomy).order(names)
