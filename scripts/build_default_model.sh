#!/usr/bin/env bash
# Rebuild the shipped default detector from scratch on a CPU (on an idle 2-core machine: about
# 2 minutes of scan generation, about 20 minutes of training, 2 of export):
#   models/xscan-detector-baggage.onnx        FP32, parity-gated against PyTorch
#   models/xscan-detector-baggage.int8.onnx   INT8 twin, written only if it loses at most
#                                             export.int8_max_ap50_drop (1 point) of AP50 on
#                                             the synthetic test scans and of detection rate
#                                             at 5 % false alarms on the real heldout scans
# each with its model card (.card.md / .card.json).
#
# Steps: generate the synthetic train/val/test scans (seeded) and the threat-image-projection
# scans (rendered threats in the `tip` half of the real SIXray benign scans of
# ../shared/data/xray-real-dev, REAL=... to point elsewhere), train with
# configs/detect_baggage_tip.yaml (operating points are calibrated on the synthetic val set's
# benign scans and stored in best.pt's spec), export with INT8 calibration on the synthetic
# val scans and the TIP scans (real backgrounds) and the INT8 accuracy gate on the held-out
# synthetic test scans (AP50) and the heldout split of the real scans (bag level: the TIP
# backgrounds are left out of it).
#
# Usage: [STEPS=N|budget] scripts/build_default_model.sh [--skip-train]
#        (XSCAN=path/to/xscan to override)
set -euo pipefail
cd "$(dirname "$0")/.."

XSCAN=${XSCAN:-.venv/bin/xscan}
CONFIG=configs/detect_baggage_tip.yaml
RUN=runs/detect_baggage_tip
REAL=${REAL:-../shared/data/xray-real-dev/sixray}
DATA=data/synth
OUT=models/xscan-detector-baggage.onnx

synth() {  # name n seed [extra synth options]
  if [ ! -f "$DATA/$1/annotations.json" ]; then
    "$XSCAN" synth --n "$2" --size 256x256 --seed "$3" --workers 2 --out "$DATA/$1" "${@:4}"
  fi
}
synth baggage_train_threats_256 2400 11 --threat-fraction 1
synth baggage_val_256 300 2
synth baggage_test_256 400 3
if [ ! -f data/tip/sixray_tip_256/annotations.json ]; then
  if [ ! -f "$REAL/labels.csv" ]; then
    echo "$REAL: real benign scans for TIP not found (set REAL=path/to/xray-real-dev/sixray)" >&2
    exit 2
  fi
  "$XSCAN" data tip "$REAL" --format xray_real_dev --split tip --n 1200 --size 256x256 \
    --seed 21 --workers 2 --out data/tip/sixray_tip_256
fi

# The config plans its steps to its time budget on the machine at hand. The shipped model's
# first run planned 2183 steps; pinning them (without the time limit) trains the same
# schedule on any machine, however long it takes there. (The 2026-12-03 rebuild with these
# steps did not reproduce the earlier weights exactly; docs/benchmarks.md, "Scan score over
# mirrored views".) STEPS=budget plans for this machine instead.
STEPS=${STEPS:-2183}
if [ "$STEPS" = budget ]; then
  steps_args=()
else
  steps_args=(--set "train.steps=$STEPS" --set train.time_limit_min=null)
fi
if [ "${1:-}" != "--skip-train" ] || [ ! -f "$RUN/best.pt" ]; then
  "$XSCAN" train "$CONFIG" "${steps_args[@]}"
fi

rc=0
"$XSCAN" export "$RUN/best.pt" --out "$OUT" \
  --int8 --calib "$DATA/baggage_val_256" --calib data/tip/sixray_tip_256 --calib-count 128 \
  --gate-data "$DATA/baggage_test_256" --gate-count 400 \
  --gate-bags "$REAL" --gate-bags-format xray_real_dev --gate-bags-split heldout || rc=$?
if [ "$rc" -eq 3 ] && [ -f "$OUT" ]; then
  echo "INT8 twin refused by the accuracy gate (numbers above); shipping FP32 only" >&2
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
"$XSCAN" info "$OUT"
