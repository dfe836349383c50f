"""``xscan demo``: the main job end to end on the built-in default (what ``make demo`` runs).

Stages, each printing what it did:

1. synthesise two sets of baggage scans with ``xscan synth`` (training and new test scans);
2. train a detector briefly (``xscan train configs/detect_baggage_synth.yaml``,
   within a time budget; skipped with ``--skip-train``);
3. export it to ONNX (``xscan export``);
4. score the new synthetic scans, and the real dev scans in
   ``../shared/data/xray-real-dev/sixray/images`` when that folder exists next to the
   repository, with ``xscan score`` and the default detector shipped in ``models/`` (minutes
   of CPU training give a weak model; ``--quick`` scores with the model trained here), then
   the briefly trained model on the synthetic scans beside it; print where the reports are.

Stages call the real CLI in subprocesses (each capability stays behind its own command, and a
failing stage cannot take the demo down with it); a stage whose command is not part of this
build says so and the demo carries on with what it has. The whole run fits in 15 minutes on
a 2-core CPU; ``--quick`` shrinks everything for the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DETECT_CONFIG = REPO / "configs" / "detect_baggage_synth.yaml"
# --quick trains the tiny variant (MobileNetV3-Small at 128 px) so the test stays short.
DETECT_CONFIG_QUICK = REPO / "configs" / "detect_baggage_synth_tiny.yaml"
REAL_DEV = REPO.parent / "shared" / "data" / "xray-real-dev" / "sixray" / "images"


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run."""

    n_train: int
    n_test: int
    train_minutes: float
    n_real: int  # real dev scans to score (0: none)
    config: Path
    seed: int = 2024

    @property
    def size(self) -> str:
        """WxH of the synthetic scans: the detector config's input size, read from its spec."""
        from xscan.config import load_config

        h, w = load_config(self.config).model.input_size
        return f"{w}x{h}"


FULL = DemoPlan(n_train=500, n_test=100, train_minutes=5.0, n_real=400, config=DETECT_CONFIG)
QUICK = DemoPlan(n_train=24, n_test=12, train_minutes=0.3, n_real=8, config=DETECT_CONFIG_QUICK)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the main job on built-in synthetic data",
        description=(
            "Synthesise scans, train a small detector briefly (or take the default model in "
            "models/), export it, score new synthetic scans (and the real dev scans when "
            "../shared is present) and print where the HTML report is."
        ),
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="smaller everything (for tests)")
    p.add_argument("--skip-train", action="store_true", help="use the shipped default model")
    p.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="training time budget: the run plans its steps to end within it",
    )
    p.set_defaults(func=run)


class Demo:
    def __init__(self, out: Path, plan: DemoPlan):
        self.out = out
        self.plan = plan
        self.step = 0
        self.unavailable: list[str] = []
        self.detections = 0  # over all scoring runs
        self.trained_here = False
        self.t0 = time.perf_counter()

    # ---------------------------------------------------------------- plumbing
    def say(self, stage: str, text: str) -> None:
        el = time.perf_counter() - self.t0
        print(f"[demo {el:6.1f}s] {stage}: {text}", flush=True)

    def has_command(self, name: str) -> bool:
        from xscan.cli import build_parser

        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return name in sub.choices

    def xscan(self, stage: str, *args: str, log_name: str) -> bool:
        """Run ``xscan ARGS`` in a subprocess, output to a log file; True when it succeeded."""
        log = self.out / "logs" / f"{log_name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "xscan", *args]
        self.say(stage, "$ xscan " + " ".join(args))
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
        if rc != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            self.say(stage, f"failed (exit {rc}); last lines of {log}:")
            for line in tail:
                print(f"    {line}")
        return rc == 0

    def unavailable_stage(self, stage: str, why: str) -> None:
        self.unavailable.append(f"{stage}: {why}")
        self.say(stage, f"UNAVAILABLE - {why}")

    # ------------------------------------------------------------------ stages
    def synthesise(self) -> Path | None:
        stage = "1 synthesise"
        if not self.has_command("synth"):
            self.unavailable_stage(stage, "xscan synth is not part of this build")
            return None
        p = self.plan
        data = self.out / "data"
        for split, n, seed in (("train", p.n_train, p.seed), ("test", p.n_test, p.seed + 1)):
            d = data / split
            if (d / "annotations.json").exists():
                self.say(stage, f"{d} already holds {split} scans, reused")
                continue
            shutil.rmtree(d, ignore_errors=True)
            workers = str(min(2, os.cpu_count() or 1))
            ok = self.xscan(stage, "synth", "--kind", "baggage", "--n", str(n), "--size",
                            p.size, "--seed", str(seed), "--out", str(d), "--workers", workers,
                            log_name=f"synth_{split}")  # fmt: skip
            if not ok:
                self.unavailable.append(f"{stage}: xscan synth failed for {split}")
                return None
            self.say(stage, f"wrote {n} {split} scans to {d}")
        return data

    def train_and_export(self, data: Path | None, minutes: float) -> Path | None:
        stage = "2 train"
        config = self.plan.config
        if not self.has_command("train") or not config.exists():
            self.unavailable_stage(stage, f"xscan train or {config.name} not available")
            return None
        if data is None:
            self.unavailable_stage(stage, "no synthetic training data")
            return None
        run_dir = self.out / "train"
        # Plan the run to end (learning rate annealed) inside the minutes given; the limit
        # stays as the hard stop.
        args = ["train", str(config), "--out", str(run_dir),
                "--set", f"train.time_budget_min={minutes * 0.95:g}",
                "--set", f"train.time_limit_min={minutes}"]  # fmt: skip
        args += train_data_overrides(data)
        ok = self.xscan(stage, *args, log_name="train")
        ckpt = find_checkpoint(run_dir)
        if ckpt is None:
            self.unavailable_stage(stage, f"training wrote no checkpoint in {run_dir}")
            return None
        if not ok:  # e.g. the final evaluation failed after the weights were saved
            self.say(stage, f"training exited with an error but saved {ckpt}; continuing")
        self.say(stage, f"trained for up to {minutes:g} min: {ckpt}")
        self.trained_here = True
        stage = "3 export"
        if not self.has_command("export"):
            self.unavailable_stage(stage, "xscan export is not part of this build")
            return None
        onnx_path = self.out / "model" / "detector.onnx"
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.xscan(stage, "export", str(ckpt), "--out", str(onnx_path), log_name="export"):
            self.unavailable.append(f"{stage}: export failed (see {self.out}/logs/export.log)")
            return None
        self.say(stage, f"exported {onnx_path}")
        return onnx_path

    def default_model(self) -> Path | None:
        stage = "2 model"
        try:
            from xscan.runtime import default_model_path

            path = Path(default_model_path())
        except (ImportError, FileNotFoundError, ValueError) as e:
            self.unavailable_stage(stage, f"no default model: {e}")
            return None
        self.say(stage, f"using the shipped default model {path}")
        return path

    def score(self, model: Path, name: str, inputs: list[str], *extra: str) -> Path | None:
        stage = "4 score"
        run_dir = self.out / f"score-{name}"
        args = ["score", str(model), *inputs, "--out", str(run_dir), "--restart", "--no-progress"]
        args += extra
        if not self.xscan(stage, *args, log_name=f"score_{name}"):
            self.unavailable.append(f"{stage}: scoring {name} failed")
            return None
        log = (self.out / "logs" / f"score_{name}.log").read_text().strip().splitlines()
        self.say(stage, f"{name}: {log[-1] if log else ''}")
        with open(run_dir / "results.jsonl", encoding="utf-8") as f:
            self.detections += sum(len(json.loads(line).get("detections") or []) for line in f)
        return run_dir / "report.html"


def train_data_overrides(data: Path) -> list[str]:
    """``--set`` overrides pointing the detector config at the demo's synthetic scans
    (``kind: xscan`` reads a folder written by ``xscan synth``)."""
    train, val = json.dumps(str(data / "train")), json.dumps(str(data / "test"))
    return ["--set", f"data.train=[{{kind: xscan, path: {train}}}]",
            "--set", f"data.val=[{{kind: xscan, path: {val}}}]",
            "--set", f"data.test=[{{kind: xscan, path: {val}}}]"]  # fmt: skip


def find_checkpoint(run_dir: Path) -> Path | None:
    for name in ("best.pt", "last.pt", "checkpoint.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    found = sorted(run_dir.rglob("*.pt")) if run_dir.exists() else []
    return found[-1] if found else None


def real_dev_inputs(n: int) -> list[str]:
    if n <= 0 or not REAL_DEV.is_dir():
        return []
    files = sorted(p for p in REAL_DEV.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if n >= len(files):
        return [str(REAL_DEV)]
    step = len(files) / n  # spread over threat (P*) and benign (N*) scans
    return [str(files[int(i * step)]) for i in range(n)]


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(out, plan)
    demo.say("0 start", f"output in {out} ({'quick' if args.quick else 'full'} run, "
             f"{os.cpu_count()} CPUs)")  # fmt: skip
    data = demo.synthesise()
    trained = None
    if not args.skip_train:
        minutes = args.train_minutes if args.train_minutes is not None else plan.train_minutes
        trained = demo.train_and_export(data, minutes)
    # A few minutes of CPU training shows the path but gives a weak model: the reports are
    # made with the shipped default detector when there is one, and the briefly trained
    # model is scored on the synthetic test scans beside it.
    use_shipped = args.skip_train or not args.quick or trained is None
    shipped = demo.default_model() if use_shipped else None
    model = shipped or trained
    reports = []
    synth_test = data / "test" / "images" if data is not None else None
    if model is None:
        demo.unavailable_stage("4 score", "no model to score with")
    else:
        if synth_test is not None and synth_test.is_dir():
            reports.append(demo.score(model, "synthetic", [str(synth_test)]))
        real = real_dev_inputs(plan.n_real)
        if real:
            reports.append(demo.score(model, "real-dev", real))
        else:
            demo.say("4 score", f"no real dev scans at {REAL_DEV}; skipped")
        if trained is not None and model != trained and synth_test is not None:
            demo.detections = 0  # count the briefly trained model's detections alone
            reports.append(demo.score(trained, "synthetic-trained-here", [str(synth_test)]))
    reports = [r for r in reports if r is not None and r.exists()]
    el = time.perf_counter() - demo.t0
    print()
    print(f"xscan demo finished in {el / 60:.1f} min.")
    for stage in demo.unavailable:
        print(f"  not done: {stage}")
    for r in reports:
        print(f"  report: {r}")
    if reports and demo.trained_here and demo.detections == 0:
        print(
            "  note: the briefly trained detector reported nothing above its score threshold; "
            "train longer (--train-minutes, or scripts/build_default_model.sh for the full "
            "recipe); the shipped default model is in models/"
        )
    if not reports:
        print("  no report was produced")
        return 1
    return 0
