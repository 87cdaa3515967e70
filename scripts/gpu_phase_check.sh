#!/usr/bin/env bash
# The phase-map device check: a 64x64 Gray-Scott map at the paper's settings on one CUDA GPU.
#
#   bash scripts/gpu_phase_check.sh            # from the repository root; target: under 5 minutes
#
# 1. The device's memory bandwidth, measured with a torch copy (read + write of a
#    1 GiB float32 tensor, best of 5), beside what nvidia-smi reports.
# 2. The step alone: cell-updates/s of one 4096-row batch of N = 200 (the map's chunk),
#    500 steps with metrics every step and the map's checks, for the Triton kernel
#    (`kernel: triton`, the default on CUDA) and the torch.compile step (`kernel: compiled`,
#    the default before issue 19), each with its % of the bandwidth bound
#    (rdbench.bench.rd.kernel_rates; the batch built and the kernels compiled untimed).
# 3. `rdbench phase rd --feed 0.01:0.08:64 --kill 0.03:0.07:64 --seed 0 --device cuda
#    --set kernel=K`, once with K = triton and once with K = compiled: 4096 rows of
#    N = 200, 5000 steps, in chunks sized to the free CUDA memory; for each, its wall time
#    (the sum over chunks: building the rows, the steps, reading the series back and
#    labelling), cell updates and cell-updates/s (MLflow metrics) against the
#    memory-bandwidth floor: a fused float32 step must at least read u and v and write
#    them back, 16 bytes per cell update; floor = cell updates x 16 B / bandwidth.
#
# The log, the MLflow store and the maps' tables and figures go under $OUT (or
# /tmp/rdbench-gpu-phase). Without CUDA it runs a seconds-long CPU version (an 8x8
# map of the smoke profile; the steps of a 16-row batch of N = 32, eager and compiled),
# so the script can be checked anywhere. Issue 19's target: the Triton map at >= 50 %
# of the bound (1.3e11 cell-updates/s on an H200).
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
BYTES_PER_UPDATE=16   # float32: read u, v and write u, v once per cell update (the fused step's minimum)

echo "== environment"
date -u
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.max.memory --format=csv || true

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  MAP=(--feed 0.01:0.08:64 --kill 0.03:0.07:64 --seed 0 --device cuda)
  KERNELS=(triton compiled)
  STEPS_ARGS=(200 500 4096)   # grid size, steps, rows
else
  DEVICE=cpu
  echo "!! no CUDA device: running the CPU fallback (8x8 smoke map), numbers are not the GPU's"
  MAP=(--feed 0.01:0.08:8 --kill 0.03:0.07:8 --seed 0 --device cpu --profile smoke)
  KERNELS=(eager compiled)
  STEPS_ARGS=(32 60 16)
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
echo "== 2. the step alone, kernels ${KERNELS[*]} ($DEVICE)"
"$PY" - "$DEVICE" "${STEPS_ARGS[@]}" "${KERNELS[@]}" <<'PY'
import sys
from rdbench.bench.rd import kernel_rates
device, grid, steps, rows, kernels = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5:]
kernel_rates(grid, steps, rows, kernels, device)
PY

for KERNEL in "${KERNELS[@]}"; do
  echo
  echo "== 3. rdbench phase rd ${MAP[*]} --set kernel=$KERNEL"
  EXPERIMENT="gpu-phase-$KERNEL-$(date +%s)"
  START=$(date +%s.%N)
  "$PY" -m rdbench phase rd "${MAP[@]}" --set "kernel=$KERNEL" --experiment "$EXPERIMENT" --no-resume \
    --out "$OUT_DIR/map-$KERNEL"
  END=$(date +%s.%N)
  "$PY" - "$EXPERIMENT" "$BANDWIDTH" "$BYTES_PER_UPDATE" "$START" "$END" "$KERNEL" <<'PY'
import sys
from mlflow import MlflowClient
experiment, bandwidth, per_update, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *map(float, sys.argv[4:6])
kernel = sys.argv[6]
client = MlflowClient()
exp = client.get_experiment_by_name(experiment)
(run,) = client.search_runs([exp.experiment_id], "tags.`rdbench.kind` = 'phase'")
m = run.data.metrics
floor = m["cell_updates"] * per_update / bandwidth
print(f"kernel            {kernel}")
print(f"points            {m['points']:.0f}")
print(f"command wall time {end - start:.1f} s (with start-up, compile, labels and figures)")
print(f"map wall time     {m['wall_time_s']:.1f} s (sum over chunks)")
print(f"cell updates      {m['cell_updates']:.4g}")
print(f"cell-updates/s    {m['cell_updates_per_s']:.4g}")
print(f"peak memory       RSS {m['peak_rss_mib']:.0f} MiB" + (f", CUDA {m['peak_device_mib']:.0f} MiB" if "peak_device_mib" in m else ""))
print(f"bandwidth floor   {floor:.2f} s = {m['cell_updates']:.4g} x {per_update:.0f} B / {bandwidth / 1e9:.0f} GB/s "
      f"(at most {bandwidth / per_update:.4g} cell-updates/s)")
print(f"reached           {floor / m['wall_time_s']:.1%} of the bandwidth bound (kernel {kernel})")
PY
  echo "table and figures: $OUT_DIR/map-$KERNEL/phase"
done
echo "log: $LOG"
