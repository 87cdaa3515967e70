#!/usr/bin/env bash
# The DDPM device check: one command, under 8 minutes on one CUDA GPU.
#
#   bash scripts/gpu_ddpm_check.sh            # from the repository root
#
# 1. `rdbench bench ddpm` on CUDA with the paper-profile U-Net (bf16 autocast,
#    channels-last): training images/s of rdbench's U-Net vs diffusers'
#    UNet2DModel, the probe's cost during sampling, M_diff vs Table 1.
# 2. `rdbench run ddpm --dataset digits --profile paper` trained briefly on CUDA
#    (2000 steps; digits = sklearn's bundled 8x8 digits upsampled to 32x32, NOT
#    MNIST: the device machine has no network to download MNIST), sampled with
#    the probe; prints the run's metrics and training images/s.
#
# The log and the MLflow store go under $OUT (or /tmp/rdbench-gpu-ddpm); the
# checkpoints (about 160 MB each for the paper U-Net) under $RDBENCH_DATA_DIR
# (default /tmp/rdbench-gpu-ddpm-data), MLflow's artifacts under ./mlruns. Without
# CUDA it runs a seconds-long CPU version of the same two steps (smoke profile),
# so the script can be checked anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-/tmp/rdbench-gpu-ddpm}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_ddpm_check.log"
exec > >(tee "$LOG") 2>&1

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # rdbench from this checkout, installed or not
export MLFLOW_TRACKING_URI="sqlite:///$OUT_DIR/mlflow.db"
export RDBENCH_DATA_DIR="${RDBENCH_DATA_DIR:-/tmp/rdbench-gpu-ddpm-data}"
unset MLFLOW_RUN_ID
RDBENCH=("$PY" -m rdbench.cli)

echo "== environment"
date -u
"$PY" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "mlflow", "diffusers", "sklearn", "pydantic", "click"):
    try:
        print(f"{name:10s}", importlib.import_module(name).__version__)
    except Exception as exc:  # noqa: BLE001
        print(f"{name:10s} MISSING ({exc})")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  BENCH=(--profile paper --device cuda --train-steps 10 --sampling-steps 200 --rounds 3 --m-diff-samples 4)
  RUN=(--profile paper --device cuda --train-steps 2000 --checkpoint-every 1000 --probe-every 500 --log-every 50)
else
  DEVICE=cpu
  echo "!! no CUDA device: running the CPU fallback (smoke profile), numbers are not the GPU's"
  BENCH=(--profile smoke --device cpu --train-steps 1 --sampling-steps 10 --rounds 1 --m-diff-samples 0)
  RUN=(--profile smoke --device cpu --train-steps 10 --probe-every 5)
fi

echo
echo "== 1. rdbench bench ddpm ${BENCH[*]}"
SECONDS=0
timeout 240 "${RDBENCH[@]}" bench ddpm "${BENCH[@]}"
echo "(bench: ${SECONDS} s)"

echo
echo "== 2. rdbench run ddpm --dataset digits ${RUN[*]}"
SECONDS=0
timeout 300 "${RDBENCH[@]}" run ddpm --dataset digits "${RUN[@]}" --experiment gpu-ddpm-check
echo "(run: ${SECONDS} s)"

echo
echo "== metrics of the run (from the MLflow store)"
"$PY" - <<'PY'
import mlflow

client = mlflow.MlflowClient()
exp = client.get_experiment_by_name("gpu-ddpm-check")
run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
m = run.data.metrics
print("run", run.info.run_id, run.info.status, "device", run.data.params.get("device"))
keys = ["M_react", "M_diff", "M_diff_closed_form", "R", "R_final", "M_eps", "control.untrained.R",
        "control.untrained.M_react", "control.oracle.R", "control.oracle_noise.R", "final_loss", "train_images_per_s", "sampling_s", "n_parameters",
        "wall_time_s"]
for key in keys:
    if key in m:
        print(f"  {key:28s} {m[key]:.6g}")
history = client.get_metric_history(run.info.run_id, "R_during_training")
print("  R_during_training by step:", ", ".join(f"{h.step}: {h.value:.4f}" for h in sorted(history, key=lambda h: h.step)))
loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda h: h.step)
print("  loss by step:", ", ".join(f"{h.step}: {h.value:.4f}" for h in loss[:: max(1, len(loss) // 8)]))
PY
echo "== done on $DEVICE; log in $LOG"
