"""ModelSpec: the single source of truth for a model's contract.

A spec is written once (the ``model:`` section of an experiment config), validated here,
used by the dataset and by ``build_model``, stored in every checkpoint, written into the
ONNX file's ``metadata_props`` under :data:`METADATA_KEY` as JSON, and read back by the
torch-free runtime. No later stage asks the user for these values again.

Conventions
-----------
* ``input_size`` is ``(height, width)`` in pixels of the network input.
* Images enter the network as float32 ``(B, C, H, W)`` scaled to ``[0, 1]`` (8-bit images
  divided by 255, 16-bit by 65535); ``mean``/``std`` normalisation happens *inside* the
  exported graph, so the runtime only scales and resizes.
* Boxes are ``xyxy`` in pixels.

Standard library only: this module is imported by the runtime on edge devices.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
METADATA_KEY = "xscan.spec"

TASKS = ("detect", "anomaly")
# false_color: 3-channel RGB false-colour image as produced by baggage scanners (8-bit).
# raw_dual: (low-energy transmission, high-energy transmission, effective-Z / 100) channels.
# gray: single-channel transmission image (single-energy scanners such as GDXray).
MODALITIES = {"false_color": 3, "raw_dual": 3, "gray": 1}
RESIZE_MODES = ("letterbox", "stretch")


class SpecError(ValueError):
    """A spec is invalid; the message names the field and what was expected."""


@dataclass(frozen=True)
class OperatingPoint:
    """A calibrated alarm threshold.

    ``threshold`` applies to the image score (the highest detection score for a detector,
    the normalised anomaly score for an anomaly model). ``target_far`` is the false-alarm
    rate on benign scans the threshold was calibrated for; ``far`` and ``detection_rate``
    are what was measured on the calibration/evaluation data (``None`` when unknown).
    """

    name: str
    threshold: float
    target_far: float | None = None
    far: float | None = None
    detection_rate: float | None = None
    n_benign: int | None = None
    source: str = ""

    def validate(self) -> None:
        if not self.name:
            raise SpecError("operating_points[].name: expected a non-empty string")
        if not math.isfinite(self.threshold):
            raise SpecError(f"operating_points[{self.name}].threshold: expected a finite number")
        for key in ("target_far", "far", "detection_rate"):
            v = getattr(self, key)
            if v is not None and not (0.0 <= v <= 1.0):
                raise SpecError(f"operating_points[{self.name}].{key}: expected 0..1, got {v}")


LOCATION_SCORES = ("max", "top_fraction")
SCAN_SCORES = ("tile_max", "map_max")
SCAN_VIEWS = (1, 2, 4, 8)
# The exported graph's outputs (docs/architecture.md, "The exported model"); a detector with
# scan_views > 1 also returns VIEW_SCORES (B, views).
DETECTOR_OUTPUTS = ("boxes", "scores", "classes", "num_dets")
VIEW_SCORES = "view_scores"
ANOMALY_OUTPUTS = ("anomaly_map", "scores")


def _validate_location_normalization(loc: dict[str, Any]) -> None:
    """Check the shape of ``spec.location_normalization`` (see the field's comment)."""
    where = "location_normalization"
    missing = [k for k in ("grid", "mean", "std") if k not in loc]
    if missing:
        raise SpecError(f"{where}: missing key(s) {missing}")
    grid = loc["grid"]
    if (
        not isinstance(grid, (list, tuple))
        or len(grid) != 2
        or any(not isinstance(g, int) or g <= 0 for g in grid)
    ):
        raise SpecError(f"{where}.grid: expected [rows, cols] > 0, got {grid!r}")
    gh, gw = grid
    for key in ("mean", "std"):
        rows = loc[key]
        if (
            not isinstance(rows, (list, tuple))
            or len(rows) != gh
            or any(not isinstance(r, (list, tuple)) or len(r) != gw for r in rows)
        ):
            raise SpecError(f"{where}.{key}: expected {gh} rows of {gw} values")
    if any(not float(v) > 0 for r in loc["std"] for v in r):
        raise SpecError(f"{where}.std: expected positive values")
    score = loc.get("score", "max")
    if score not in LOCATION_SCORES:
        raise SpecError(f"{where}.score: expected one of {LOCATION_SCORES}, got {score!r}")
    if score == "top_fraction" and not 0.0 < float(loc.get("top_fraction", 0.0)) <= 1.0:
        raise SpecError(f"{where}.top_fraction: expected (0, 1], got {loc.get('top_fraction')!r}")


@dataclass(frozen=True)
class ModelSpec:
    """The contract of a model: what goes in, what comes out, and how to decide."""

    task: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    arch: str
    arch_params: dict[str, Any] = field(default_factory=dict)
    modality: str = "false_color"
    resize: str = "letterbox"
    pad_value: float = 1.0  # letterbox fill in [0, 1]; 1.0 = white = air in a transmission image
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    score_threshold: float = 0.25  # detections below this are not reported
    nms_iou: float = 0.5
    max_detections: int = 100
    operating_points: tuple[OperatingPoint, ...] = ()
    default_operating_point: str | None = None
    # Anomaly models: how the raw score maps to the normalised score that thresholds use.
    score_normalization: dict[str, float] = field(default_factory=dict)
    # Anomaly models: per-location benign statistics of the anomaly map on a coarse grid in
    # normalised scan coordinates (cell (i, j) covers rows i/gh..(i+1)/gh and columns
    # j/gw..(j+1)/gw of the scan). When present the runtime standardises the stitched raw map
    # by them, (map - mean) / std, and takes the raw scan score from the standardised map
    # (``score``: "max" or "top_fraction", the mean of the highest ``top_fraction`` of its
    # pixels) before score_normalization. Keys: grid [gh, gw], mean and std (gh rows of gw
    # values, map units), score, top_fraction, scans. Empty: the raw map, scored by
    # scan_score (below). See xscan.runtime.anomaly.
    location_normalization: dict[str, Any] = field(default_factory=dict)
    # Anomaly models without location normalisation: the raw scan score is the maximum of the
    # model's per-tile scores ("tile_max") or the maximum of the anomaly map stitched at scan
    # resolution ("map_max"; tile borders, where smoothing inside the graph is biased, are
    # down-weighted by the stitching). An untiled scan: the model's own score, or the maximum
    # of its map inside the letterbox.
    scan_score: str = "tile_max"
    # Tiling for scans larger than the input (cargo, line scans): tile size is input_size.
    # The runtime tiles a scan only when fitting it whole would shrink it more than
    # tile_max_downscale times: a model trained on whole bags at the input size keeps seeing
    # whole bags, a cargo model trained on native-resolution crops sees tiles.
    tile_overlap: float = 0.25
    tile_max_downscale: float = 2.0
    # Detectors: the scan score (the number the alarm threshold is compared with) is the mean,
    # over this many views of the network input, of each view's highest detection score.
    # 1: the scan as it is; 2: and mirrored left to right; 4: and upside down, and both;
    # 8: and each of those turned by 90 degrees (square inputs only). Detections and their
    # scores always come from the scan as it is; a tiled scan is scored from one view.
    scan_views: int = 1
    name: str = "xscan-model"
    version: str = "0"
    weights_sha256: str = ""
    # Free-form provenance: training data summary, metrics, config name, created_at, ...
    info: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return MODALITIES[self.modality]

    @property
    def operating_point(self) -> OperatingPoint | None:
        """The default operating point, or ``None`` when the model has none."""
        if not self.operating_points:
            return None
        name = self.default_operating_point or self.operating_points[0].name
        for op in self.operating_points:
            if op.name == name:
                return op
        raise SpecError(f"default_operating_point: no operating point named {name!r}")

    @property
    def alarm_threshold(self) -> float:
        """Threshold on the image score used for alarm decisions."""
        op = self.operating_point
        return op.threshold if op is not None else self.score_threshold

    # --------------------------------------------------------------- validation
    def validate(self) -> ModelSpec:
        if self.schema_version > SCHEMA_VERSION:
            raise SpecError(
                f"schema_version: this xscan reads spec schema <= {SCHEMA_VERSION}, the model "
                f"has {self.schema_version}; upgrade xscan to load it"
            )
        if self.task not in TASKS:
            raise SpecError(f"task: expected one of {TASKS}, got {self.task!r}")
        if self.task == "detect" and not self.class_names:
            raise SpecError("class_names: a detector needs at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise SpecError(f"class_names: duplicates in {list(self.class_names)}")
        if any(not isinstance(c, str) or not c for c in self.class_names):
            raise SpecError("class_names: expected non-empty strings")
        if len(self.input_size) != 2 or any(
            not isinstance(s, int) or s <= 0 for s in self.input_size
        ):
            raise SpecError(f"input_size: expected [height, width] > 0, got {self.input_size}")
        if self.modality not in MODALITIES:
            raise SpecError(f"modality: expected one of {list(MODALITIES)}, got {self.modality!r}")
        if self.resize not in RESIZE_MODES:
            raise SpecError(f"resize: expected one of {RESIZE_MODES}, got {self.resize!r}")
        c = self.in_channels
        if len(self.mean) != c or len(self.std) != c:
            raise SpecError(
                f"mean/std: modality {self.modality!r} has {c} channel(s); got mean of "
                f"{len(self.mean)} and std of {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise SpecError(f"std: expected positive values, got {self.std}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise SpecError(f"score_threshold: expected 0..1, got {self.score_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise SpecError(f"nms_iou: expected (0, 1], got {self.nms_iou}")
        if self.max_detections <= 0:
            raise SpecError(f"max_detections: expected > 0, got {self.max_detections}")
        if not 0.0 <= self.tile_overlap < 1.0:
            raise SpecError(f"tile_overlap: expected [0, 1), got {self.tile_overlap}")
        if not self.tile_max_downscale >= 1.0:
            raise SpecError(f"tile_max_downscale: expected >= 1, got {self.tile_max_downscale}")
        if self.location_normalization:
            _validate_location_normalization(self.location_normalization)
        if self.scan_views not in SCAN_VIEWS:
            raise SpecError(f"scan_views: expected one of {SCAN_VIEWS}, got {self.scan_views!r}")
        if self.scan_views == 8 and self.input_size[0] != self.input_size[1]:
            raise SpecError(
                f"scan_views: 8 views turn the input by 90 degrees and need a square input, "
                f"got input_size {list(self.input_size)}"
            )
        if self.scan_score not in SCAN_SCORES:
            raise SpecError(f"scan_score: expected one of {SCAN_SCORES}, got {self.scan_score!r}")
        names = [op.name for op in self.operating_points]
        if len(set(names)) != len(names):
            raise SpecError(f"operating_points: duplicate names in {names}")
        for op in self.operating_points:
            op.validate()
        if self.default_operating_point is not None and self.default_operating_point not in names:
            raise SpecError(
                f"default_operating_point: no operating point named "
                f"{self.default_operating_point!r} (have {names})"
            )
        return self

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["operating_points"] = [dataclasses.asdict(op) for op in self.operating_points]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "spec") -> ModelSpec:
        """Build and validate a spec; unknown keys are an error naming ``source``."""
        if not isinstance(d, dict):
            raise SpecError(f"{source}: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        version = d.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise SpecError(
                f"{source}: schema_version {version} is newer than this xscan reads "
                f"({SCHEMA_VERSION}); upgrade xscan to load this model"
            )
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        missing = [k for k in ("task", "class_names", "input_size", "arch") if k not in d]
        if missing:
            raise SpecError(f"{source}: missing required field(s) {missing}")
        kw = dict(d)
        try:
            kw["class_names"] = tuple(str(c) for c in d["class_names"])
            kw["input_size"] = tuple(int(s) for s in d["input_size"])
            if "mean" in d:
                kw["mean"] = tuple(float(v) for v in d["mean"])
            if "std" in d:
                kw["std"] = tuple(float(v) for v in d["std"])
            ops = []
            for op in d.get("operating_points", ()) or ():
                if isinstance(op, OperatingPoint):
                    ops.append(op)
                else:
                    ops.append(OperatingPoint(**op))
            kw["operating_points"] = tuple(ops)
        except (TypeError, ValueError) as e:
            raise SpecError(f"{source}: {e}") from e
        for key in ("arch_params", "score_normalization", "location_normalization", "info"):
            if key in kw and kw[key] is None:
                kw[key] = {}
        return cls(**kw).validate()

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> ModelSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source}: not valid JSON ({e})") from e
        return cls.from_dict(d, source=source)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` applied, validated."""
        return dataclasses.replace(self, **changes).validate()

    def with_operating_points(
        self, points: list[OperatingPoint] | tuple[OperatingPoint, ...], default: str | None = None
    ) -> ModelSpec:
        points = tuple(points)
        return self.replace(
            operating_points=points,
            default_operating_point=default or (points[0].name if points else None),
        )
