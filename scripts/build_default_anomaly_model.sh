#!/usr/bin/env bash
# Rebuild the default cargo anomaly model models/xscan-anomaly-cargo.onnx (and its model card)
# from nothing but this repository: synthetic cargo scans, benign-only training, calibration,
# export, evaluation on held-out seeds. About 26 minutes on 2 idle CPU cores once the data
# folders exist (2026-12-02: 25.9 min in all; training ~18 min of it, the fit 13 min and
# calibration on 96 scans; evaluation on 240 + 60 scans ~8 min), plus ~10 minutes of scan
# generation (960 benign training scans at ~2.3 scans/s, 240 test scans in 94 s).
#
#   scripts/build_default_anomaly_model.sh [OUT_ONNX]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/xscan-anomaly-cargo.onnx}
XSCAN=${XSCAN:-.venv/bin/xscan}
DATA=runs/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# 1. data (configs/anomaly_cargo_synth.yaml reads these folders)
[ -d $DATA/anomaly_cargo_train960 ] || $XSCAN synth --kind cargo --n 960 --seed 100 --threat-fraction 0 --workers 2 --out $DATA/anomaly_cargo_train960
[ -d $DATA/anomaly_cargo_calib96 ] || $XSCAN synth --kind cargo --n 96 --seed 200 --threat-fraction 0 --workers 2 --out $DATA/anomaly_cargo_calib96
[ -d $DATA/anomaly_cargo_test ]  || $XSCAN synth --kind cargo --n 60 --seed 300 --threat-fraction 0.5 --workers 2 --out $DATA/anomaly_cargo_test
[ -d $DATA/anomaly_cargo_test240 ] || $XSCAN synth --kind cargo --n 240 --seed 400 --threat-fraction 0.5 --workers 2 --out $DATA/anomaly_cargo_test240

# 2. benign-only training + calibration of the operating points on held-out benign scans
$XSCAN train configs/anomaly_cargo_synth.yaml

# 3. export from the checkpoint alone (spec, normalisation and operating points travel inside)
$XSCAN export runs/anomaly_cargo_synth/model.pt --out "$OUT"

# 4. held-out evaluation through the runtime: metrics.json and heat-map overlays, on 240 scans
# (120 benign: enough to see the tail of benign scores) and on the earlier 60-scan set
$XSCAN eval "$OUT" $DATA/anomaly_cargo_test240 --out runs/eval_anomaly_cargo
$XSCAN eval "$OUT" $DATA/anomaly_cargo_test --out runs/eval_anomaly_cargo_test60
$XSCAN info "$OUT"
