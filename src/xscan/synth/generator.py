"""Synthetic scan generation: one scan from a seed (online use) and dataset folders.

``generate_scan`` builds a scene (:mod:`~xscan.synth.baggage` or :mod:`~xscan.synth.cargo`),
renders it through the scanner physics (:mod:`~xscan.synth.render`), maps it to false colour
(:mod:`~xscan.synth.colormap`) and annotates its objects. The scan depends only on
``(kind, size, seed, options)``. ``write_dataset`` writes the folder layout of
``docs/architecture.md`` ("Synthetic dataset folder") with worker processes; per-image seeds
come from the master seed through ``np.random.SeedSequence``, so the bytes written do not
depend on the number of workers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xscan.synth.scene import SceneObject

GENERATOR_VERSION = "1.0"
KINDS = ("baggage", "cargo")
CLUTTER_LEVELS = ("low", "medium", "high")
MIN_SIDE, MAX_SIDE = 32, 16384
# Occlusion counts where the rest of the scene alone has −ln T_high above this (see scene.py);
# linac cargo scans cross metres of load, so "dense" starts later there.
OCCLUSION_THRESHOLD = {"baggage": 0.7, "cargo": 2.3}
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def threats_range(value: Any, name: str = "threats per scan") -> tuple[int, int] | None:
    """A threats-per-scan range from ``"2-4"``, ``"3"``, ``3``, ``[2, 4]`` or ``None`` (the
    default draw); ``name`` prefixes the error (a flag or a config key)."""
    if value is None:
        return None
    parts = list(value) if isinstance(value, (list, tuple)) else str(value).split("-")
    try:
        nums = [int(v) for v in parts]
    except (TypeError, ValueError):
        nums = []
    if len(nums) not in (1, 2):
        raise ValueError(f"{name}: expected MIN-MAX such as 2-4, got {value!r}")
    return nums[0], nums[-1]


@dataclass(frozen=True)
class SynthOptions:
    """Scene options. ``with_threat`` forces (True/False) or draws (None) a threat scan;
    ``threat_fraction`` is the chance of a threat scan when drawn. ``threats_per_scan``
    ``(lo, hi)``: baggage threat scans hold a uniform lo..hi threats instead of the default
    1-3 (mostly 1)."""

    threat_fraction: float = 0.5
    clutter: str = "medium"
    annotate_benign: bool = True
    noise: bool = True
    with_threat: bool | None = None
    threats_per_scan: tuple[int, int] | None = None

    def validate(self) -> None:
        if not (0.0 <= self.threat_fraction <= 1.0) or math.isnan(self.threat_fraction):
            raise ValueError(f"threat fraction must be in [0, 1], got {self.threat_fraction}")
        if self.threats_per_scan is not None:
            lo, hi = self.threats_per_scan
            if not (1 <= lo <= hi <= 8):
                raise ValueError(f"threats per scan: expected 1 <= MIN <= MAX <= 8, got {lo}-{hi}")
        if self.clutter not in CLUTTER_LEVELS:
            raise ValueError(
                f"clutter must be one of {', '.join(CLUTTER_LEVELS)}, got {self.clutter!r}"
            )


@dataclass
class Scan:
    """One synthetic scan.

    ``rgb`` ``(H, W, 3) uint8`` false colour; ``t_low``/``t_high`` ``(H, W) float32``
    transmissions in (0, 1]; ``objects`` annotated objects (boxes xyxy in pixels, ``(H, W)``
    bool masks); ``has_threat`` is true when any object has ``is_threat``.
    """

    rgb: np.ndarray
    t_low: np.ndarray
    t_high: np.ndarray
    objects: list[SceneObject]
    has_threat: bool
    kind: str
    seed: int
    pixel_cm: float = 0.0


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _check_size(size_hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size_hw)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width) integers, got {size_hw!r}") from None
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise ValueError(
            f"size {w}x{h}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
        )
    return h, w


_MU_CACHE: dict[str, dict[str, float]] = {}


def _mu_eff(kind: str, materials) -> dict[str, float]:
    """Per-material −ln T_high per cm (1 cm slab; 10 cm for cargo) for occlusion estimates."""
    from xscan.synth.render import get_renderer

    cache = _MU_CACHE.setdefault(kind, {})
    missing = [m for m in materials if m not in cache]
    if missing:
        r = get_renderer(kind)
        ref = 1.0 if kind == "baggage" else 10.0
        for m in missing:
            _, t_high = r.slab(m, np.array([ref]))
            cache[m] = float(-np.log(max(float(t_high[0]), 1e-12)) / ref)
    return cache


def generate_scan(
    kind: str, size_hw: tuple[int, int], seed: int, options: SynthOptions | None = None
) -> Scan:
    """Generate one scan of ``kind`` (``baggage``/``cargo``), ``size_hw = (H, W)`` pixels.

    Deterministic in its arguments. A threat scan (``options.with_threat`` or drawn with
    ``threat_fraction``) always holds at least one annotated threat.
    """
    from xscan.synth.baggage import build_baggage
    from xscan.synth.cargo import build_cargo
    from xscan.synth.colormap import false_color
    from xscan.synth.render import get_renderer

    _check_kind(kind)
    h, w = _check_size(size_hw)
    opts = options or SynthOptions()
    opts.validate()
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(int(seed))
    with_threat = (
        opts.with_threat
        if opts.with_threat is not None
        else bool(rng.random() < opts.threat_fraction)
    )
    for _ in range(8):  # a threat scan whose threats all fell out of view is drawn again
        if kind == "baggage":
            scene = build_baggage(
                rng,
                (h, w),
                with_threat,
                opts.clutter,
                opts.annotate_benign,
                opts.threats_per_scan,
            )
        else:
            scene = build_cargo(rng, (h, w), with_threat)
        objects = scene.annotate(_mu_eff(kind, scene.materials()), OCCLUSION_THRESHOLD[kind])
        has_threat = any(o.is_threat for o in objects)
        if has_threat == with_threat:
            break
    renderer = get_renderer(kind)
    t_low, t_high = renderer.transmission(scene.path_lengths(), rng, noise=opts.noise)
    scene.release()
    rgb = false_color(t_low, t_high, kind)
    return Scan(rgb, t_low, t_high, objects, has_threat, kind, int(seed), scene.pixel_cm)


def render_threat_patch(
    category: str, seed: int, scanner: str = "baggage", pixel_cm: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rendered threat for threat image projection.

    Returns ``(obj_low, obj_high, mask)``: ``(h, w) float32`` noise-free transmissions of the
    object alone (1.0 outside it) and its ``(h, w) bool`` mask, at ``pixel_cm`` cm per pixel
    (about a 512-px baggage scan), randomly rotated and tilted from ``seed``. Multiply them into
    raw scans (:func:`xscan.synth.tip.project_raw`).
    """
    from xscan.synth.render import get_renderer
    from xscan.synth.shapes import place
    from xscan.synth.threats import THREAT_BUILDERS, build_threat

    if category not in THREAT_BUILDERS:
        raise ValueError(
            f"unknown threat category {category!r}; expected one of {sorted(THREAT_BUILDERS)}"
        )
    rng = np.random.default_rng(int(seed))
    shape = build_threat(category, rng, pixel_cm)
    diag = math.hypot(shape.w, shape.h)
    placed = place(
        shape, (diag / 2 + 2, diag / 2 + 2), float(rng.uniform(0, 360)), float(rng.uniform(0, 40))
    )
    placed.shift(-placed.x0, -placed.y0)
    t_low, t_high = get_renderer(scanner).transmission(placed.layers, None, noise=False)
    mask = placed.mask()
    t_low[~mask] = 1.0
    t_high[~mask] = 1.0
    return t_low, t_high, mask


# ---------------------------------------------------------------------------- datasets
@dataclass
class DatasetPlan:
    """What ``write_dataset`` will write: image ids, per-image seeds and threat flags."""

    kind: str
    size_hw: tuple[int, int]
    seed: int
    options: SynthOptions
    ids: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    threats: list[bool] = field(default_factory=list)


def plan_dataset(
    kind: str, n: int, size_hw: tuple[int, int], seed: int, options: SynthOptions
) -> DatasetPlan:
    """Per-image seeds (``SeedSequence(seed)``) and an exact share of threat scans.

    ``round(n * threat_fraction)`` scans carry threats; which ones is a seeded permutation.
    """
    _check_kind(kind)
    size_hw = _check_size(size_hw)
    options.validate()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of scans) must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    ss_assign, ss_images = np.random.SeedSequence(seed).spawn(2)
    n_threat = int(round(n * options.threat_fraction))
    order = np.random.default_rng(ss_assign).permutation(n)
    threat = np.zeros(n, bool)
    threat[order[:n_threat]] = True
    seeds = [int(c.generate_state(1, np.uint32)[0]) for c in ss_images.spawn(n)]
    width = max(6, len(str(n - 1)))
    ids = [f"{kind}_{i:0{width}d}" for i in range(n)]
    return DatasetPlan(kind, size_hw, seed, options, ids, seeds, threat.tolist())


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "images").mkdir(exist_ok=True)
        (out / "raw").mkdir(exist_ok=True)
        probe = out / ".xscan-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{out}: output folder is not writable ({e.strerror or e})") from None


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img, _PNG)
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def _to_uint16(t: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(t * 65535.0), 0, 65535).astype(np.uint16)


def _make_one(job: tuple) -> tuple[dict, list[dict]]:
    """Generate, write and annotate one scan (runs in a worker process)."""
    from xscan.synth.coco import annotation_records

    out, index, image_id, kind, size_hw, seed, options = job
    scan = generate_scan(kind, size_hw, seed, options)
    out = Path(out)
    _write_png(out / "images" / f"{image_id}.png", cv2.cvtColor(scan.rgb, cv2.COLOR_RGB2BGR))
    _write_png(out / "raw" / f"{image_id}_low.png", _to_uint16(scan.t_low))
    _write_png(out / "raw" / f"{image_id}_high.png", _to_uint16(scan.t_high))
    h, w = scan.rgb.shape[:2]
    image = {
        "id": index + 1,
        "file_name": f"{image_id}.png",
        "width": w,
        "height": h,
        "raw_low": f"raw/{image_id}_low.png",
        "raw_high": f"raw/{image_id}_high.png",
        "has_threat": scan.has_threat,
        "kind": kind,
        "seed": seed,
        "pixel_cm": round(scan.pixel_cm, 6),
    }
    return image, annotation_records(scan.objects, kind)


def _init_worker(setup: Callable[..., None] | None = None, setup_args: tuple = ()) -> None:
    cv2.setNumThreads(1)
    if setup is not None:
        setup(*setup_args)


def run_jobs(
    fn: Callable[[Any], Any],
    jobs: list,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    setup: Callable[..., None] | None = None,
    setup_args: tuple = (),
) -> list:
    """``[fn(job) for job in jobs]`` in order, in ``workers`` processes when more than one.

    ``setup(*setup_args)`` runs once in each process that runs jobs (the caller's own when
    ``workers == 1``); worker processes also limit OpenCV to one thread.
    """
    n = len(jobs)
    results = []
    if workers == 1:
        if setup is not None:
            setup(*setup_args)
        for k, job in enumerate(jobs):
            results.append(fn(job))
            if progress:
                progress(k + 1, n)
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Not "fork": a child forked from a process whose OpenCV/OpenMP thread pools are
    # already running can inherit a held lock and hang (seen when generating from a
    # process that had trained or scored before). forkserver children start clean.
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(
        min(workers, n), mp_context=ctx, initializer=_init_worker, initargs=(setup, setup_args)
    ) as pool:
        chunk = max(1, min(8, n // (4 * workers)))
        for k, res in enumerate(pool.map(fn, jobs, chunksize=chunk)):
            results.append(res)
            if progress:
                progress(k + 1, n)
    return results


def write_dataset(
    out: str | os.PathLike,
    kind: str,
    n: int,
    size_hw: tuple[int, int],
    seed: int,
    workers: int = 1,
    options: SynthOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``n`` scans to ``out`` (layout in ``docs/architecture.md``); returns the manifest.

    Same arguments give byte-identical files whatever ``workers`` is.
    """
    from xscan import __version__
    from xscan.synth.coco import write_coco

    options = options or SynthOptions()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    plan = plan_dataset(kind, n, size_hw, seed, options)
    out = Path(out)
    _check_writable(out)
    jobs = [
        (
            str(out),
            i,
            plan.ids[i],
            kind,
            plan.size_hw,
            plan.seeds[i],
            SynthOptions(**{**asdict(options), "with_threat": plan.threats[i]}),
        )
        for i in range(n)
    ]
    results = run_jobs(_make_one, jobs, workers, progress)
    arguments = {
        "kind": kind,
        "n": n,
        "size": f"{plan.size_hw[1]}x{plan.size_hw[0]}",
        "seed": seed,
        "threat_fraction": options.threat_fraction,
        "clutter": options.clutter,
        "annotate_benign": options.annotate_benign,
        "noise": options.noise,
    }
    if options.threats_per_scan is not None:
        lo, hi = options.threats_per_scan
        arguments["threats_per_scan"] = f"{lo}-{hi}"
    info = {
        "description": f"xscan synthetic {kind} scans",
        "version": GENERATOR_VERSION,
        "generator": "xscan.synth",
        "xscan_version": __version__,
        "seed": seed,
    }
    images = [r[0] for r in results]
    write_coco(out / "annotations.json", kind, images, [r[1] for r in results], info)
    manifest = {
        "generator": "xscan.synth",
        "generator_version": GENERATOR_VERSION,
        "xscan_version": __version__,
        "arguments": arguments,
        "seed": seed,
        "images": [
            {"id": plan.ids[i], "seed": plan.seeds[i], "has_threat": images[i]["has_threat"]}
            for i in range(n)
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
