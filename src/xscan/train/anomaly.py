"""``xscan train`` for ``model.task: anomaly``: fit on benign scans only, then calibrate.

Steps (each a plain function):

1. benign training crops from ``data.train`` (scans with a threat label are refused; a scan
   larger than twice the input is cut into the runtime's own tiles of ``model.input_size`` at
   native resolution plus random crops; a smaller one is letterboxed whole);
2. fit: ``anomaly_patchcore`` fills a memory bank with patch features and compresses it by a
   greedy k-center coreset to ``train.extra.memory_bank_size`` rows (the size goes into
   ``spec.arch_params``); ``anomaly_stfpm`` trains its student for ``train.epochs``;
3. optionally (``train.extra.location_norm``) fit per-location benign statistics of the
   anomaly map on the benign training scans, scored whole as the runtime scores them
   (``spec.location_normalization``, :mod:`xscan.anomaly.location`);
4. calibrate on held-out benign scans (``data.val``; scored whole, exactly as the runtime
   scores them): ``spec.score_normalization`` and one operating point per
   ``eval.far_targets``, the default at ``eval.default_far``;
5. write ``OUT/model.pt`` (checkpoint with the calibrated spec) and ``OUT/calibration.json``.

``train.extra`` options: ``memory_bank_size`` (4096), ``crops_per_scan`` (16, random crops
besides the runtime's tiles when ``tile_grid``, default true),
``patches_per_crop`` (256, patches of each crop kept before the coreset), ``patch_sampling``
(``random``, default; ``kcenter``: the crop's own greedy k-center, see
:func:`crop_kcenter`; ``novelty``: ``kcenter`` plus rows for rare content, with
``reference_scans`` (96), ``reference_size`` (1024), ``novelty_per_crop`` (4) and
``novelty_bank_size`` (1024), see :func:`fit_patchcore`),
``coreset_proj_dim`` (128), ``location_norm`` (``{}`` = off; else ``grid`` [rows, cols],
``std_floor``, ``score``, ``top_fraction``: the arguments of
:func:`xscan.anomaly.location.fit_location_normalization`), ``pretrain`` (reserved; must be
empty).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xscan.anomaly.scanscore import score_scan, torch_runner
from xscan.anomaly.sources import LabelledScan, iter_scans, scan_refs
from xscan.config import ExperimentConfig, save_resolved
from xscan.metrics.anomaly import calibrate
from xscan.preprocess import letterbox, to_modality
from xscan.runtime.tiling import should_tile, tile_grid
from xscan.spec import ModelSpec
from xscan.train.checkpoint import save_checkpoint, weights_sha256

log = logging.getLogger(__name__)

EXTRA_DEFAULTS: dict[str, Any] = {
    "memory_bank_size": 4096,
    "crops_per_scan": 16,
    "tile_grid": True,
    "patches_per_crop": 256,
    "patch_sampling": "random",
    "reference_scans": 96,
    "reference_size": 1024,
    "novelty_per_crop": 4,
    "novelty_bank_size": 1024,
    "coreset_proj_dim": 128,
    "location_norm": {},
    "pretrain": {},
}

LOCATION_KEYS = ("grid", "std_floor", "score", "top_fraction")
PATCH_SAMPLING = ("random", "kcenter", "novelty")


def extra_options(cfg: ExperimentConfig) -> dict[str, Any]:
    unknown = sorted(set(cfg.train.extra) - set(EXTRA_DEFAULTS))
    if unknown:
        raise ValueError(
            f"{cfg.source}: train.extra: unknown key(s) {unknown} for anomaly training; "
            f"known: {sorted(EXTRA_DEFAULTS)}"
        )
    opts = {**EXTRA_DEFAULTS, **cfg.train.extra}
    if opts["patch_sampling"] not in PATCH_SAMPLING:
        raise ValueError(
            f"{cfg.source}: train.extra.patch_sampling: expected one of {list(PATCH_SAMPLING)}, "
            f"got {opts['patch_sampling']!r}"
        )
    if opts["pretrain"]:
        raise ValueError(
            f"{cfg.source}: train.extra.pretrain: backbone pretraining is not implemented; "
            "load local weights with train.init_weights instead"
        )
    loc = opts["location_norm"] or {}
    if not isinstance(loc, dict) or set(loc) - set(LOCATION_KEYS):
        raise ValueError(
            f"{cfg.source}: train.extra.location_norm: expected a mapping with keys from "
            f"{list(LOCATION_KEYS)}, got {loc!r}"
        )
    return opts


def fit_location(model, cfg: ExperimentConfig, spec: ModelSpec, opts: dict[str, Any]):
    """``spec.location_normalization`` from the raw maps of the benign training scans, each
    scored whole exactly as the runtime scores it (tiles, stitching)."""
    from xscan.anomaly.location import fit_location_normalization

    run = torch_runner(model)
    refs = scan_refs(cfg.data.train, spec.modality, "data.train")
    maps = (score_scan(s.image, spec, run).amap for s in iter_scans(refs) if s.label == 0)
    kw = dict(opts["location_norm"])
    if "grid" in kw:
        kw["grid"] = tuple(int(g) for g in kw["grid"])
    return fit_location_normalization(maps, **kw)


def scan_crops(
    scan: LabelledScan, spec: ModelSpec, n_crops: int, rng: np.random.Generator, grid: bool = True
) -> np.ndarray:
    """Network inputs ``(n, C, H, W) float32`` in [0, 1] from one scan: when the runtime would
    tile it, its tiles (``grid``) and ``n_crops`` random native-resolution crops; else the
    letterboxed scan (n = 1)."""
    x = to_modality(scan.image, spec.modality)
    h, w = x.shape[:2]
    th, tw = spec.input_size
    if not should_tile(h, w, spec.input_size):
        inp, _ = letterbox(x, spec.input_size, spec.pad_value, spec.resize)
        return inp.transpose(2, 0, 1)[None]
    # the runtime's own tiles (what inference will see) plus random crops (other alignments)
    out = []
    for t in tile_grid(h, w, spec.input_size, spec.tile_overlap) if grid else ():
        crop, _ = letterbox(
            x[t.y0 : t.y1, t.x0 : t.x1], spec.input_size, spec.pad_value, spec.resize
        )
        out.append(crop.transpose(2, 0, 1))
    for _ in range(n_crops):
        y0 = int(rng.integers(0, max(1, h - th + 1)))
        x0 = int(rng.integers(0, max(1, w - tw + 1)))
        crop, _ = letterbox(
            x[y0 : y0 + th, x0 : x0 + tw], spec.input_size, spec.pad_value, spec.resize
        )
        out.append(crop.transpose(2, 0, 1))
    return np.stack(out)


class BenignCrops:
    """Training inputs from the benign scans of ``data.train``, one scan at a time:
    iterating yields ``(n, C, H, W) float16`` arrays (float16 halves the memory of a cargo
    training set; values are in [0, 1]). ``n_scans`` counts the scans used so far."""

    def __init__(self, cfg: ExperimentConfig, opts: dict[str, Any]) -> None:
        self.cfg, self.opts = cfg, opts
        self.refs = scan_refs(cfg.data.train, cfg.model.modality, "data.train")
        if not self.refs:
            raise ValueError(f"{cfg.source}: data.train: no training scans")
        self.n_scans = 0

    def __iter__(self):
        rng = np.random.default_rng(self.cfg.seed)
        n_crops, grid = int(self.opts["crops_per_scan"]), bool(self.opts["tile_grid"])
        self.n_scans, skipped = 0, 0
        for scan in iter_scans(self.refs):
            if scan.label != 0:
                skipped += 1  # benign-only training: scans with a threat are never used
                continue
            self.n_scans += 1
            yield scan_crops(scan, self.cfg.model, n_crops, rng, grid).astype(np.float16)
        if skipped:
            log.info("skipped %d training scans with a threat (benign-only training)", skipped)
        if not self.n_scans:
            raise ValueError(
                f"{self.cfg.source}: data.train: no benign scans among {len(self.refs)}"
            )


def crop_kcenter(
    e: torch.Tensor,
    k: int,
    g: torch.Generator,
    reference: torch.Tensor | None = None,
    extra: int = 0,
) -> torch.Tensor:
    """Indices ``(B, k + extra)`` of a greedy k-center selection within each input's patches
    ``e (B, P, D)``: a random first patch, then each time the patch farthest from those chosen.
    With ``reference (R, D)`` (rows already in hand), ``extra`` more picks follow, each the
    patch farthest from the reference rows and from the patches chosen so far.

    Random patches of a scan are mostly its common content (air, container walls, the same
    boxes); a benign detail that covers 1 % of a scan and occurs in 5 % of scans (a spare wheel
    on the floor of an empty container) then reaches the memory bank through a handful of
    patches, and its own variants stay uncovered and score as anomalies. The crop's k-center
    keeps its most different patches instead: every distinct thing in the crop, once.
    """
    b, p, _ = e.shape
    e = e.to(torch.float32)
    sq = (e * e).sum(2)
    extra = min(extra, p - k) if reference is not None and len(reference) else 0
    chosen = torch.empty(b, k + extra, dtype=torch.long)
    rows = torch.arange(b)

    def dist_to(idx: torch.Tensor) -> torch.Tensor:
        c = e[rows, idx]  # (B, D)
        return sq + sq[rows, idx][:, None] - 2.0 * torch.einsum("bpd,bd->bp", e, c)

    chosen[:, 0] = torch.randint(p, (b,), generator=g)
    min_d = dist_to(chosen[:, 0])
    for j in range(1, k + extra):
        if j == k:  # from here on, what is in the reference counts as chosen too
            r = reference.to(torch.float32)
            d_ref = torch.addmm((r * r).sum(1)[None], e.reshape(b * p, -1), r.t(), alpha=-2.0)
            torch.minimum(min_d, sq + d_ref.min(dim=1).values.reshape(b, p), out=min_d)
        chosen[:, j] = torch.argmax(min_d, dim=1)
        torch.minimum(min_d, dist_to(chosen[:, j]), out=min_d)
    return chosen


def fit_patchcore(model, crops: BenignCrops, opts: dict[str, Any], seed: int) -> dict[str, Any]:
    """Fill the memory bank scan by scan (``patches_per_crop`` patches of each input, 0 = all;
    random, or by :func:`crop_kcenter` with ``patch_sampling: kcenter`` or ``novelty``) and
    coreset-compress it to ``memory_bank_size`` rows.

    ``novelty``: as ``kcenter``, and once ``reference_scans`` scans are in, a coreset of
    ``reference_size`` rows of their patches becomes the reference, and every later crop gives
    ``novelty_per_crop`` more patches: those farthest from the reference and from the crop's own
    picks, kept apart. After the coreset of the main patches, the bank grows by
    ``novelty_bank_size`` rows of those, each the one farthest from the bank so far. The main
    rows cover common content as ``kcenter`` does; the added rows cover what is rare in the
    scans (a spare wheel on a container floor), which a single coreset of everything covers
    only at its coarsest radius. (Coresetting both pools together instead spends the rows on
    the rare patches and leaves common content coarsely covered: image AUROC fell.)
    """
    from xscan.models.anomaly_patchcore import greedy_coreset

    g = torch.Generator().manual_seed(seed)
    keep = int(opts["patches_per_crop"])
    sampling = opts.get("patch_sampling", "random")
    novelty = sampling == "novelty"
    ref_scans = int(opts["reference_scans"]) if novelty else 0
    extra = int(opts["novelty_per_crop"]) if novelty else 0
    reference: torch.Tensor | None = None
    feats, rare, n_inputs, n_scans = [], [], 0, 0
    model.eval()
    for scan_crops_ in crops:
        if ref_scans and reference is None and n_scans == ref_scans:
            pool = torch.cat(feats)
            n_ref = min(int(opts["reference_size"]), pool.shape[0])
            reference = pool[greedy_coreset(pool, n_ref, int(opts["coreset_proj_dim"]), seed)]
            log.info("novelty sampling: reference of %d rows from %d scans", n_ref, n_scans)
        n_scans += 1
        n_inputs += len(scan_crops_)
        for i in range(0, len(scan_crops_), 16):
            e = model.embed(torch.from_numpy(scan_crops_[i : i + 16].astype(np.float32)))
            if keep and keep < e.shape[1]:
                if sampling in ("kcenter", "novelty"):
                    idx = crop_kcenter(e, keep, g, reference, extra)
                else:
                    idx = torch.stack(
                        [torch.randperm(e.shape[1], generator=g)[:keep] for _ in range(e.shape[0])]
                    )
                e = torch.gather(e, 1, idx[:, :, None].expand(-1, -1, e.shape[2]))
                if idx.shape[1] > keep:
                    rare.append(e[:, keep:].reshape(-1, e.shape[2]))
                    e = e[:, :keep]
            feats.append(e.reshape(-1, e.shape[2]))
    bank = torch.cat(feats)
    del feats
    n = min(int(opts["memory_bank_size"]), bank.shape[0])
    t0 = time.perf_counter()
    idx = greedy_coreset(bank, n, int(opts["coreset_proj_dim"]), seed)
    log.info("coreset: %d -> %d patches in %.1f s", bank.shape[0], n, time.perf_counter() - t0)
    n_patches = int(bank.shape[0])
    bank = bank[idx]
    if rare:
        pool = torch.cat(rare)
        n_rare = min(int(opts["novelty_bank_size"]), pool.shape[0])
        t0 = time.perf_counter()
        idx_r = greedy_coreset(pool, n_rare, int(opts["coreset_proj_dim"]), seed, covered=bank)
        bank = torch.cat([bank, pool[idx_r]])
        n_patches += int(pool.shape[0])
        log.info(
            "novelty rows: %d of %d rare patches added in %.1f s (bank %d rows)",
            n_rare,
            pool.shape[0],
            time.perf_counter() - t0,
            bank.shape[0],
        )
    elif novelty:
        log.warning(
            "patch_sampling: novelty added no rows: it needs more than reference_scans (%d) "
            "training scans and patches_per_crop below a crop's patch count (got %d scans, "
            "patches_per_crop %d); the bank is the k-center coreset alone",
            ref_scans,
            n_scans,
            keep,
        )
    model.set_memory_bank(bank)
    return {"inputs": n_inputs, "patches": n_patches, "memory_bank_size": int(bank.shape[0])}


def train_student(model, crops: np.ndarray, cfg: ExperimentConfig) -> list[float]:
    """Train the student of an ``anomaly_stfpm`` model on benign crops ``(N, C, H, W)``
    float16; per-epoch losses."""
    tc = cfg.train
    opt = torch.optim.Adam(model.student.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    deadline = time.monotonic() + 60 * tc.time_limit_min if tc.time_limit_min else None
    losses = []
    for epoch in range(tc.epochs):
        model.train()
        order = rng.permutation(len(crops))
        total, n = 0.0, 0
        for i in range(0, len(order), tc.batch_size):
            x = torch.from_numpy(crops[order[i : i + tc.batch_size]].astype(np.float32))
            if rng.random() < 0.5:  # scans are mirror-symmetric in content statistics
                x = torch.flip(x, dims=[3])
            loss = model.loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
        losses.append(total / max(n, 1))
        log.info("epoch %d/%d student loss %.4f", epoch + 1, tc.epochs, losses[-1])
        if deadline and time.monotonic() > deadline:
            log.info("time limit reached after %d epochs", epoch + 1)
            break
    model.eval()
    return losses


def calibration_scores(model, cfg: ExperimentConfig, spec: ModelSpec) -> tuple[np.ndarray, int]:
    """Raw scores of the held-out benign scans of ``data.val`` (threat scans are ignored)."""
    if not cfg.data.val:
        raise ValueError(
            f"{cfg.source}: data.val: anomaly training needs held-out benign scans to "
            "calibrate the score normalisation and the operating points"
        )
    run = torch_runner(model)
    raw = [
        score_scan(s.image, spec, run).score
        for s in iter_scans(scan_refs(cfg.data.val, spec.modality, "data.val"))
        if s.label == 0
    ]
    if len(raw) < 2:
        raise ValueError(f"{cfg.source}: data.val: need at least 2 benign scans, got {len(raw)}")
    return np.asarray(raw), len(raw)


def build_fresh(spec: ModelSpec, init_weights: str | None):
    from xscan.models.anomaly_backbone import load_backbone_weights
    from xscan.models.registry import build_model

    model = build_model(spec)
    if spec.arch_params.get("backbone") == "detector" and not init_weights:
        log.warning(
            "model.arch_params.backbone: detector without train.init_weights: the detector "
            "stages keep their random initialisation"
        )
    if init_weights:
        target = model.features.backbone if hasattr(model, "features") else model.teacher
        load_backbone_weights(target, init_weights)
    return model


def _describe(sources: list) -> list[str]:
    return [f"{s.kind}:{s.path or ''} {s.params or ''}".strip() for s in sources]


def main(cfg: ExperimentConfig) -> Path:
    """Fit, calibrate and save; returns the checkpoint path ``train.out_dir/model.pt``."""
    import xscan.models.anomaly_patchcore  # noqa: F401  (registers the architectures)
    import xscan.models.anomaly_stfpm  # noqa: F401

    opts = extra_options(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out / "config.yaml")
    spec = cfg.model
    t0 = time.perf_counter()
    crops = BenignCrops(cfg, opts)
    model = build_fresh(spec, cfg.train.init_weights)
    if spec.arch == "anomaly_patchcore":
        fit: dict[str, Any] = fit_patchcore(model, crops, opts, cfg.seed)
        spec = spec.replace(
            arch_params={**spec.arch_params, "memory_bank_size": fit["memory_bank_size"]}
        )
    elif spec.arch == "anomaly_stfpm":
        inputs = np.concatenate(list(crops))
        fit = {"inputs": int(len(inputs)), "losses": train_student(model, inputs, cfg)}
        del inputs
    else:
        raise ValueError(f"{cfg.source}: model.arch: {spec.arch!r} is not an anomaly model")
    n_scans = crops.n_scans
    fit["benign_scans"] = n_scans
    log.info("fitted on %d benign scans (%d inputs)", n_scans, fit["inputs"])
    if opts["location_norm"]:
        t1 = time.perf_counter()
        loc = fit_location(model, cfg, spec.replace(location_normalization={}), opts)
        spec = spec.replace(location_normalization=loc)
        fit["location_norm_seconds"] = round(time.perf_counter() - t1, 1)
        log.info("location normalisation: %s grid from %d benign scans", loc["grid"], loc["scans"])
    fit["fit_seconds"] = round(time.perf_counter() - t0, 1)
    raw, n_cal = calibration_scores(model, cfg, spec)
    norm, points = calibrate(raw, cfg.eval.far_targets, source="data.val benign")
    default = min(points, key=lambda p: abs(p.target_far - cfg.eval.default_far)).name
    state = model.state_dict()
    spec = spec.replace(
        score_normalization=norm,
        info={
            **spec.info,
            "config": Path(cfg.source).name,
            "fit": fit,
            "data": {
                "train": _describe(cfg.data.train),
                "val": _describe(cfg.data.val),
                "benign_training_scans": n_scans,
                "benign_calibration_scans": n_cal,
            },
            "metrics": {f"calibration_far_at_{p.name}": p.far for p in points},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    ).with_operating_points(points, default=default)
    spec = spec.replace(weights_sha256=weights_sha256(state))
    path = save_checkpoint(
        out / "model.pt",
        model=state,
        spec=spec,
        config=cfg.to_dict(),
        epoch=cfg.train.epochs,
        optimizer={},
    )
    (out / "calibration.json").write_text(
        json.dumps(
            {
                "score_normalization": norm,
                "operating_points": [p.__dict__ for p in points],
                "benign_raw_scores": [float(v) for v in raw],
                "fit": fit,
            },
            indent=2,
        )
    )
    log.info("saved %s (normalisation %s, default operating point %s)", path, norm, default)
    return path
