#!/usr/bin/env bash
# The phase-map device check: a 64x64 Gray-Scott map at the paper's settings on one CUDA GPU.
#
#   bash scripts/gpu_phase_check.sh            # from the repository root; target: under 5 minutes
#
# 1. The device's memory bandwidth, measured with a torch copy (read + write of a
#    1 GiB float32 tensor, best of 5), beside what nvidia-smi reports.
# 2. `rdbench phase rd --feed 0.01:0.08:64 --kill 0.03:0.07:64 --seed 0 --device cuda`:
#    4096 rows of N = 200, 5000 steps, in chunks sized to the free CUDA memory; its
#    wall time (the sum over chunks), cell updates and cell-updates/s (MLflow metrics).
# 3. The memory-bandwidth floor: a fused float32 step must at least read u and v and
#    write them back, 16 bytes per cell update; floor = cell updates x 16 B / bandwidth,
#    printed beside the measured time, with the fraction of the bound reached.
#
# The log, the MLflow store and the map's table and figures go under $OUT (or
# /tmp/rdbench-gpu-phase). Without CUDA it runs a seconds-long CPU version (an 8x8
# map of the smoke profile), so the script can be checked anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-/tmp/rdbench-gpu-phase}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_phase_check.log"
exec > >(tee "$LOG") 2>&1

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # rdbench from this checkout, installed or not
export MLFLOW_TRACKING_URI="sqlite:///$OUT_DIR/mlflow.db"
unset MLFLOW_RUN_ID
EXPERIMENT="gpu-phase-$(date +%s)"
BYTES_PER_UPDATE=16   # float32: read u, v and write u, v once per cell update (the fused step's minimum)

echo "== environment"
date -u
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.max.memory --format=csv || true

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  MAP=(--feed 0.01:0.08:64 --kill 0.03:0.07:64 --seed 0 --device cuda)
else
  DEVICE=cpu
  echo "!! no CUDA device: running the CPU fallback (8x8 smoke map), numbers are not the GPU's"
  MAP=(--feed 0.01:0.08:8 --kill 0.03:0.07:8 --seed 0 --device cpu --profile smoke)
fi

echo
echo "== 1. memory bandwidth (torch copy, $DEVICE)"
BANDWIDTH=$("$PY" - "$DEVICE" <<'PY'
import sys, time, torch
device = torch.device(sys.argv[1])
n = (1 << 30) // 4 if device.type == "cuda" else (1 << 26) // 4
src = torch.ones(n, device=device)
dst = torch.empty_like(src)
best = float("inf")
for _ in range(5):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = min(best, time.perf_counter() - start)
print(f"{2 * n * 4 / best:.6g}")  # bytes read + written per second
PY
)
echo "copy bandwidth: $(awk -v b="$BANDWIDTH" 'BEGIN{printf "%.1f GB/s", b/1e9}')"

echo
echo "== 2. rdbench phase rd ${MAP[*]}"
START=$(date +%s.%N)
"$PY" -m rdbench phase rd "${MAP[@]}" --experiment "$EXPERIMENT" --no-resume --out "$OUT_DIR/map"
END=$(date +%s.%N)

echo
echo "== 3. against the memory-bandwidth floor"
"$PY" - "$EXPERIMENT" "$BANDWIDTH" "$BYTES_PER_UPDATE" "$START" "$END" <<'PY'
import sys
from mlflow import MlflowClient
experiment, bandwidth, per_update, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *map(float, sys.argv[4:6])
client = MlflowClient()
exp = client.get_experiment_by_name(experiment)
(run,) = client.search_runs([exp.experiment_id], "tags.`rdbench.kind` = 'phase'")
m = run.data.metrics
floor = m["cell_updates"] * per_update / bandwidth
print(f"points            {m['points']:.0f}")
print(f"command wall time {end - start:.1f} s (with start-up, compile, labels and figures)")
print(f"map wall time     {m['wall_time_s']:.1f} s (sum over chunks)")
print(f"cell updates      {m['cell_updates']:.4g}")
print(f"cell-updates/s    {m['cell_updates_per_s']:.4g}")
print(f"peak memory       RSS {m['peak_rss_mib']:.0f} MiB" + (f", CUDA {m['peak_device_mib']:.0f} MiB" if "peak_device_mib" in m else ""))
print(f"bandwidth floor   {floor:.2f} s = {m['cell_updates']:.4g} x {per_update:.0f} B / {bandwidth / 1e9:.0f} GB/s "
      f"(at most {bandwidth / per_update:.4g} cell-updates/s)")
print(f"reached           {floor / m['wall_time_s']:.1%} of the bandwidth bound")
PY
echo "log: $LOG; table and figures: $OUT_DIR/map/phase"
