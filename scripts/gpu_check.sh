#!/usr/bin/env bash
# The GPU speed check: within 8 minutes on one H100, measure both models in both
# settings (baseline fp32 eager vs channels_last + fused optimiser + bf16 + torch.compile),
# the data loaders, and train two synthetic runs with and without the optimisations.
# Usage (repository root, environment set up with `make setup`):
#   bash scripts/gpu_check.sh [OUT]        # OUT defaults to reports/gpu-check
# Writes OUT/perf.json, OUT/perf.md (with the projection of every experiment on this GPU),
# OUT/parity.json, OUT/parity.md, OUT/train.log and OUT/nvidia-smi.txt. DEVICE=cpu SIZE=64 runs the same steps on a CPU (to
# try the script; the figures are then not meaningful).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/gpu-check}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-256}
BIN=${BIN:-.venv/bin}
mkdir -p "$OUT"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1
start=$(date +%s)
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia-smi.txt" 2>&1

# 1. Both models, both settings, and the loaders (about 4 minutes on an H100, compilation
#    included).
timeout 330 "$BIN/cdbench" bench --device "$DEVICE" --size "$SIZE" --out "$OUT" \
  $([ "$DEVICE" = cpu ] && echo --quick) 2>&1 | tee "$OUT/bench.log"
echo "bench done after $(( $(date +%s) - start )) s"

# 2. Short synthetic trainings on the device, the same seed with and without the
#    optimisations (`cdbench parity`): the validation F1 must agree within 0.5 points;
#    the baseline again with the next seed says how far a change of seed moves it.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$BIN/cdbench" synth --out "$scratch/data/prepared/synthetic" > "$OUT/train.log" 2>&1
sed "s#prepared_dir: data/prepared#prepared_dir: $scratch/data/prepared#" params.yaml \
  > "$scratch/params.yaml"
timeout 240 "$BIN/cdbench" --params "$scratch/params.yaml" parity --device "$DEVICE" \
  --experiment bsfnet-sisb-synthetic --experiment ifn-ds-synthetic --seed-noise --out "$OUT" \
  2>&1 | tee -a "$OUT/train.log" || echo "parity: see $OUT/train.log"
echo "GPU check finished in $(( $(date +%s) - start )) s; figures in $OUT/perf.md"
