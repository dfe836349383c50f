"""Compare ways of turning a PatchCore model's maps into scan scores, on identical maps.

Fitting a cargo model and scoring every scan takes most of the time, and the choices compared
here (smoothing of the stitched map, per-location normalisation, top-k aggregation) all act on
the stitched raw map. So ``dump`` fits the model of a config once (benign training scans only,
exactly as ``xscan train`` fits it) and stores the raw stitched maps of the train, calibration
(``data.val``) and test scans; ``compare`` then scores every variant on those same maps:

    python benchmarks/anomaly_map_variants.py dump configs/anomaly_cargo_synth.yaml \
        runs/exp/full_base.npz
    python benchmarks/anomaly_map_variants.py compare runs/exp/full_base.npz

Per variant: test image AUROC; FAR / detection rate on the test scans at a 5 % FAR threshold
set on the benign calibration scans (what a deployment sees); pixel AUROC on maps and masks
reduced to a long side of 256 px (as ``xscan eval`` does). Location statistics are fitted on
the benign *training* maps only (xscan.anomaly.location); no test scan or mask influences any
statistic or threshold. Smoothing here is a Gaussian on the stitched map (``sigma`` in scan
pixels), a stand-in for a larger ``model.arch_params.smooth_sigma`` (in map pixels, applied
per tile inside the graph); the rebuilt model is the measurement of the latter.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np


def dump(args: argparse.Namespace) -> None:
    import torch

    import xscan.models.anomaly_patchcore  # noqa: F401  (registers the architecture)
    from xscan.anomaly.scanscore import score_scan, torch_runner
    from xscan.anomaly.sources import iter_scans, scan_refs
    from xscan.config import load_config
    from xscan.train.anomaly import BenignCrops, build_fresh, extra_options, fit_patchcore

    cfg = load_config(args.config, args.set)
    opts = extra_options(cfg)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.train.threads or 2)
    t0 = time.perf_counter()
    spec = cfg.model
    model = build_fresh(spec, cfg.train.init_weights)
    fit = fit_patchcore(model, BenignCrops(cfg, opts), opts, cfg.seed)
    spec = spec.replace(
        arch_params={**spec.arch_params, "memory_bank_size": fit["memory_bank_size"]},
        location_normalization={},
    )
    print("fit", fit, f"{time.perf_counter() - t0:.0f} s", flush=True)
    run = torch_runner(model)
    out: dict[str, np.ndarray] = {}
    scale = 1.0
    for split in args.splits.split(","):
        maps, scores, labels, masks = [], [], [], []
        for s in iter_scans(scan_refs(getattr(cfg.data, split), spec.modality, split)):
            r = score_scan(s.image, spec, run)
            h, w = r.amap.shape
            scale = min(1.0, args.max_side / max(h, w))
            size = (int(round(w * scale)), int(round(h * scale)))
            mask = s.mask if s.mask is not None else np.zeros((h, w), bool)
            maps.append(cv2.resize(r.amap, size, interpolation=cv2.INTER_AREA).astype(np.float16))
            masks.append(
                cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
            )
            scores.append(r.score)
            labels.append(s.label)
        out[f"{split}_maps"] = np.stack(maps)
        out[f"{split}_scores"] = np.asarray(scores)
        out[f"{split}_labels"] = np.asarray(labels)
        out[f"{split}_masks"] = np.stack(masks)
        print(split, len(maps), f"{time.perf_counter() - t0:.0f} s", flush=True)
    out["scale"] = np.asarray(scale)
    np.savez_compressed(args.out, **out)


def _pixel_auroc(maps, masks) -> float:
    from xscan.metrics.anomaly import pixel_auroc

    red_maps, red_masks = [], []
    for a, m in zip(maps, masks, strict=True):
        h, w = m.shape
        f = min(1.0, 256 / max(h, w))
        size = (int(round(w * f)), int(round(h * f)))
        red_maps.append(cv2.resize(a, size, interpolation=cv2.INTER_AREA))
        red_masks.append(
            cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        )
    return pixel_auroc(red_masks, red_maps)


def compare(args: argparse.Namespace) -> None:
    from xscan.anomaly.location import fit_location_normalization
    from xscan.metrics.alarm import auroc, calibrate_threshold
    from xscan.runtime.anomaly import location_score, location_standardize

    d = dict(np.load(args.maps))
    scale = float(args.scale if args.scale else d.get("scale", 1.0))
    labels = d["test_labels"] > 0
    test = [m.astype(np.float32) for m in d["test_maps"]]
    calib = [m.astype(np.float32) for m in d["val_maps"]]
    train = [m.astype(np.float32) for m in d["train_maps"]]
    print(
        f"{len(train)} train, {len(calib)} calibration, {len(test)} test ({labels.sum()} anomalous)"
    )
    print("| variant | image AUROC | at far5: FAR / DR | pixel AUROC |")
    print("|---|---|---|---|")

    def row(name: str, fn, score) -> None:
        zt = [fn(m) for m in test]
        st = np.array([score(z) for z in zt])
        sc = np.array([score(fn(m)) for m in calib])
        t = calibrate_threshold(sc, 0.05)
        far, dr = float((st[~labels] >= t).mean()), float((st[labels] >= t).mean())
        pix = _pixel_auroc(zt, list(d["test_masks"]))
        print(
            f"| {name} | {auroc(st, labels):.3f} | {far:.2f} / {dr:.2f} | {pix:.3f} |", flush=True
        )

    base = d["test_scores"]
    print(
        f"| maximum tile score, raw map (as fitted) | {auroc(base, labels):.3f} | – | "
        f"{_pixel_auroc(test, list(d['test_masks'])):.3f} |"
    )
    for sigma in args.sigmas:
        s = sigma * scale

        def smooth(m, s=s):
            return cv2.GaussianBlur(m, (0, 0), s) if s > 0 else m

        row(f"sigma {sigma:g} px, map maximum", smooth, lambda z: float(z.max()))
        sm_train = [smooth(m) for m in train]
        for grid in args.grids:
            for floor in args.floors:
                loc = fit_location_normalization(sm_train, grid, floor, "max")
                row(
                    f"sigma {sigma:g} px, location norm {grid[0]}x{grid[1]} floor {floor:g}, max",
                    lambda m, loc=loc, smooth=smooth: location_standardize(smooth(m), loc),
                    lambda z, loc=loc: location_score(z, loc),
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("dump", help="fit a config's model once and store raw stitched maps")
    p.add_argument("config")
    p.add_argument("out")
    p.add_argument("--set", action="append", default=[], help="config override a.b=v")
    p.add_argument("--splits", default="train,val,test")
    p.add_argument("--max-side", type=int, default=1024, help="stored map size (px)")
    p.set_defaults(fn=dump)
    p = sub.add_parser("compare", help="score the variants on stored maps")
    p.add_argument("maps")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0, 16, 32], help="scan px")
    p.add_argument(
        "--grids",
        type=lambda t: tuple(int(v) for v in t.split("x")),
        nargs="+",
        default=[(16, 32), (32, 64)],
        help="location grids, ROWSxCOLS",
    )
    p.add_argument("--floors", type=float, nargs="+", default=[0.25, 1.0])
    p.add_argument("--scale", type=float, help="stored map px per scan px (default: from file)")
    p.set_defaults(fn=compare)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
