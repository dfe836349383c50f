"""Folder scoring: is decoding hidden behind inference, and is memory flat in folder size?

One run measures, on one folder:

* model-only images/s: ``infer_prepared`` on tensors decoded and prepared beforehand;
* end-to-end images/s: ``xscan.score.run.score`` (threaded decode, batching, writing, fsync),
  with large JPEGs decoded reduced by DCT scaling (``--decode-margin 2``) and with every scan
  decoded at full resolution (the default, ``--decode-margin 0``);
* a naive loop: read -> ``model.predict`` -> write a JSON line, one image at a time;

and peak RSS of ``xscan score`` subprocesses on 1,000 vs 20,000 generated images.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_score.py [--model M.onnx] [--folder DIR]

Without ``--model`` it takes the first FP32 detector ONNX in ``models/`` or ``runs/`` and falls back
to the toy detector of the tests (say which in the results). Without ``--folder`` it uses the
real dev scans (``../shared/data/xray-real-dev/sixray/images``) when present, else generated
scan-like JPEGs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _models import find_model

ROOT = Path(__file__).resolve().parents[1]
SIXRAY = ROOT.parent / "shared" / "data" / "xray-real-dev" / "sixray" / "images"


def scan_like_folder(out: Path, n: int, seed: int = 0) -> Path:
    """``n`` seeded 1024x768 scan-like JPEGs (white background, overlapping dark objects)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((768, 1024, 3), 250, np.uint8)
        for _ in range(12):
            y, x = rng.integers(0, 600), rng.integers(0, 850)
            h, w = rng.integers(40, 200), rng.integers(40, 200)
            img[y : y + h, x : x + w] = (img[y : y + h, x : x + w] * rng.uniform(0.3, 0.9)).astype(
                np.uint8
            )
        cv2.imwrite(str(out / f"scan{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def copies_folder(out: Path, n: int, seed: int = 0) -> Path:
    """``n`` small PNGs: copies of 8 seeded 128x96 variants, 1,000 per sub-folder."""
    rng = np.random.default_rng(seed)
    base = []
    for _ in range(8):
        img = np.full((96, 128, 3), 255, np.uint8)
        img[rng.integers(0, 48) :][:40, rng.integers(0, 64) :][:, :50] = rng.integers(0, 200, 3)
        ok, buf = cv2.imencode(".png", img)
        base.append(buf.tobytes())
    for i in range(n):
        d = out / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"img{i:06d}.png").write_bytes(base[i % 8])
    return out


def prepare_all(model, files: list[Path]) -> list:
    from xscan.imageio import read_image

    return [model.prepare(read_image(f)) for f in files]


def model_only(model, prepared: list, batch: int) -> float:
    """Images/s of ``infer_prepared`` alone on tensors prepared beforehand (batches stacked
    in advance too, so only inference and decoding of outputs are timed)."""
    batches = [
        (np.stack([c[0] for c in prepared[s : s + batch]]), [c[1] for c in prepared[s : s + batch]])
        for s in range(0, len(prepared), batch)
    ]
    t0 = time.perf_counter()
    for x, infos in batches:
        model.infer_prepared(x, infos)
    return len(prepared) / (time.perf_counter() - t0)


def naive_loop(model, files: list[Path], out: Path) -> float:
    from xscan.imageio import read_image

    t0 = time.perf_counter()
    with open(out, "w") as f:
        for p in files:
            pred = model.predict(read_image(p), tiling="never")
            f.write(json.dumps({"path": str(p), **pred.to_dict()}) + "\n")
    return len(files) / (time.perf_counter() - t0)


def end_to_end(model_path: Path, folder: Path, run_dir: Path, batch: int, workers: int, threads,
               full_decode: bool = False):  # fmt: skip
    import xscan.score.run as run

    # tiling="never": every scan is letterboxed whole, the same work as the model-only run.
    cfg = run.ScoreConfig(model=str(model_path), inputs=[str(folder)], out=str(run_dir),
                          batch_size=batch, workers=workers, threads=threads, progress=False,
                          restart=True, tiling="never",
                          decode_margin=0.0 if full_decode else 2.0)  # fmt: skip
    cpu0 = time.process_time()
    res = run.score(cfg)
    # CPU time of this process (decode threads + onnxruntime + writer) per scored image: far
    # less sensitive to other load on the machine than images/s.
    res.session["cpu_ms_per_image"] = (time.process_time() - cpu0) * 1e3 / res.session["scored"]
    return res.session["scored"] / res.session["wall_s"], res.session


def peak_rss_mb(model_path: Path, folder: Path, run_dir: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time of ``xscan score`` in a fresh subprocess."""
    # VmHWM of the child's own address space: getrusage's ru_maxrss would carry over the
    # forked parent's peak across exec.
    code = (
        "import sys, time; from xscan.cli import main; t=time.perf_counter(); "
        "rc = main(sys.argv[1:]); w = time.perf_counter() - t; "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
        "print('RSS', hwm, w)"
    )
    args = ["score", str(model_path), str(folder), "--out", str(run_dir), "--no-progress",
            "--restart"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    line = [x for x in out.stdout.splitlines() if x.startswith("RSS ")][-1].split()
    return int(line[1]) / 1024, float(line[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--folder", help="folder for the throughput comparison")
    ap.add_argument("--n", type=int, default=300, help="images from the folder to use")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    ap.add_argument(
        "--score-threads",
        type=int,
        default=None,
        help="ORT intra-op threads of the xscan score runs only (default: --threads); "
        "1 leaves a core to decoding while model-only keeps --threads",
    )
    ap.add_argument("--rss-sizes", default="1000,20000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "xscan-bench-score"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from xscan.runtime import load_model

    model_path, model_kind = find_model(args.model, work)
    if args.folder:
        src, folder_kind = Path(args.folder), "given"
    elif SIXRAY.is_dir():
        src, folder_kind = SIXRAY, "SIXray real dev scans (JPEG, ~600-1500 px)"
    else:
        src, folder_kind = scan_like_folder(work / "scanlike", args.n), "generated 1024x768 JPEGs"
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[: args.n]
    folder = work / "throughput"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for p in files:
        os.symlink(p.resolve(), folder / p.name)
    model = load_model(model_path, threads=args.threads)
    score_threads = args.score_threads if args.score_threads is not None else args.threads
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    print(f"model: {model_path} ({model_kind}), input {model.spec.input_size}")
    print(f"onnxruntime threads: model-only {args.threads or 'default'}, "
          f"xscan score {score_threads or 'default'}")  # fmt: skip
    print(f"folder: {len(files)} images, {folder_kind}")
    # Rounds alternate the three methods so that load from other processes on a shared
    # machine falls on all of them alike; medians are reported.
    res: dict[str, list[float]] = {"model": [], "e2e": [], "e2e_full": [], "naive": []}
    sessions, sessions_full = [], []
    prepared = prepare_all(model, files)
    for r in range(args.rounds):
        res["model"].append(model_only(model, prepared, args.batch_size))
        e2e, session = end_to_end(model_path, folder, work / "run_e2e", args.batch_size,
                                  args.workers, score_threads)  # fmt: skip
        res["e2e"].append(e2e)
        sessions.append(session)
        e2e, session = end_to_end(model_path, folder, work / "run_e2e_full", args.batch_size,
                                  args.workers, score_threads, full_decode=True)  # fmt: skip
        res["e2e_full"].append(e2e)
        sessions_full.append(session)
        res["naive"].append(naive_loop(model, files, work / "naive.jsonl"))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items())
              + f" images/s; CPU ms/image e2e {sessions[-1]['cpu_ms_per_image']:.1f}, e2e_full "
              f"{sessions_full[-1]['cpu_ms_per_image']:.1f}; "
              f"loadavg {Path('/proc/loadavg').read_text().split()[0]}")  # fmt: skip
    mo, e2e, full, naive = (float(np.median(res[k])) for k in ("model", "e2e", "e2e_full", "naive"))
    waited = float(np.median([s["wait_s"] / s["wall_s"] for s in sessions]))
    waited_full = float(np.median([s["wait_s"] / s["wall_s"] for s in sessions_full]))
    print(f"model-only (pre-decoded tensors): {mo:8.1f} images/s")
    print(f"end-to-end xscan score:           {e2e:8.1f} images/s ({100 * e2e / mo:.0f}% of model)")
    pct_full = 100 * full / mo
    print(f"  same, full-size decoding:       {full:8.1f} images/s ({pct_full:.0f}% of model)")
    print(f"naive decode->infer->write loop:  {naive:8.1f} images/s (score: {e2e / naive:.2f}x)")
    print(f"inference stage waiting for decoded inputs: {100 * waited:.1f}% of the score run "
          f"({100 * waited_full:.1f}% with full decode)")  # fmt: skip
    cpu = float(np.median([s["cpu_ms_per_image"] for s in sessions]))
    cpu_full = float(np.median([s["cpu_ms_per_image"] for s in sessions_full]))
    print(f"CPU per scored image (whole process): {cpu:.1f} ms ({cpu_full:.1f} ms full decode)")
    # The memory runs use the 64x64 toy detector so that 20,000 images take seconds: what
    # they measure is the pipeline's memory, not the model's.
    sys.path.insert(0, str(ROOT / "tests"))
    from toy_models import make_toy_detector

    rss_model = make_toy_detector(work / "toy_detector_64.onnx")
    for n in (int(x) for x in args.rss_sizes.split(",")):
        d = work / f"copies_{n}"
        if not d.exists():
            copies_folder(d, n)
        rss, wall = peak_rss_mb(rss_model, d, work / f"run_rss_{n}")
        print(f"peak RSS, {n:6d} images: {rss:7.1f} MiB  ({wall:.1f} s, {n / wall:.0f} images/s)")
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
