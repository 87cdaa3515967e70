#!/usr/bin/env bash
# The one device check (issue 19): every number the issue asks for, under 8 minutes on one H200.
#
#   bash scripts/gpu_check.sh                 # from the repository root, on the GPU machine
#   DEVICE=cpu bash scripts/gpu_check.sh      # the CPU fallback: the same steps at smoke sizes
#
# It prints, in order:
# 1. `rdbench bench ddpm --profile paper --device cuda --batch 128`: training images/s of
#    rdbench's U-Net and diffusers' UNet2DModel, both captured (one CUDA graph per step),
#    their ratio, the variants (channels-last vs contiguous, bf16 autocast vs bf16
#    weights with fp32 master copies, today's eager step) and torch.profiler's top
#    kernels; sampling ms per reverse step for 16 images (captured) and the probe's
#    cost; M_diff vs Table 1. Targets: >= 30,000 images/s, <= 1 ms/step, probe <= 5 %.
#    The variant table decides the training defaults (bf16, channels_last in
#    conf/systems/ddpm.yaml): change them only if it shows another variant faster.
# 2. `rdbench run ddpm --dataset digits --profile paper --device cuda` end to end (20,000
#    steps, the probes, 16 samples, the controls; `capture: auto` = the captured steps):
#    its wall time (target: under 3 minutes), R, R during training (0.0708 at step
#    2,000 before issue 19: it must stay within the seed spread), training images/s.
# 3. scripts/gpu_phase_check.sh: the Gray-Scott 64x64 map against the bandwidth bound.
#
# The GPU machine has NO NETWORK and NO MLFLOW (shared/infra-notes.md, "A GPU machine": it
# has torch, triton, numpy, Python 3.12; no mlflow, pydantic, diffusers, docker, SQLAlchemy,
# alembic). Those packages travel as wheels in .whl/ (kept out of git, carried to the
# machine): the closure of `mlflow==3.17.2 diffusers==0.42.1 pydantic==2.14.4 docker==7.2.0`
# as cp312 manylinux wheels, minus what the machine has (48 wheels, 41 MB: mlflow,
# mlflow-skinny, mlflow-tracing, sqlalchemy, alembic, pydantic, pydantic-core, diffusers,
# docker, cryptography, opentelemetry-*, flask, graphene, ...), made here with
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform any -d .whl \
#     mlflow==3.17.2 diffusers==0.42.1 pydantic==2.14.4 docker==7.2.0
# When mlflow is missing and .whl/ is there, the script installs them into $SITE (default
# /tmp/site, about 20 s) with `pip install --no-index --no-deps`. MLflow writes to a sqlite
# file under $OUT; the digits dataset is bundled with scikit-learn (no download).
#
# Output: this log and the MLflow store under $OUT (default /tmp/rdbench-gpu-check),
# checkpoints under $RDBENCH_DATA_DIR (default: a fresh folder under $OUT). Overridable: DEVICE (cuda|cpu, default: cuda when
# available), RUN_STEPS (default: the profile's 20,000), BENCH_TIMEOUT, RUN_TIMEOUT,
# PHASE_TIMEOUT (seconds).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-/tmp/rdbench-gpu-check}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
START_ALL=$(date +%s)

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # rdbench from this checkout, installed or not
SITE="${SITE:-/tmp/site}"
if ! "$PY" -c "import mlflow" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "== installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE (no network)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl
  fi
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
export MLFLOW_TRACKING_URI="sqlite:///$OUT_DIR/mlflow.db"
EXPERIMENT="gpu-check-$(date +%s)"
export RDBENCH_DATA_DIR="${RDBENCH_DATA_DIR:-$OUT_DIR/data-$EXPERIMENT}"   # fresh: no checkpoint to continue from
unset MLFLOW_RUN_ID
RDBENCH=("$PY" -m rdbench.cli)

if [ -z "${DEVICE:-}" ]; then
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then DEVICE=cuda; else DEVICE=cpu; fi
fi
if [ "$DEVICE" = cuda ]; then
  BENCH=(--profile paper --device cuda --batch 128 --train-steps 20 --rounds 3 --sampling-steps 200
         --sampling-rounds 5 --samples 16 --m-diff-samples 4)
  RUN=(--profile paper --device cuda)
  [ -n "${RUN_STEPS:-}" ] && RUN+=(--train-steps "$RUN_STEPS")
else
  export CUDA_VISIBLE_DEVICES=""   # the phase check decides by itself: make it take its CPU path too
  echo "!! DEVICE=cpu: the CPU fallback at smoke sizes; its numbers are not the GPU's"
  BENCH=(--profile smoke --device cpu --train-steps 1 --rounds 1 --sampling-steps 5 --sampling-rounds 1
         --m-diff-samples 0 --profile-steps 1)
  # capture=on: the static-buffer steps (the functions CUDA captures) called directly, end to end
  RUN=(--profile smoke --device cpu --train-steps "${RUN_STEPS:-10}" --probe-every 5 --set schedule.timesteps=20
       --set capture=on)
  RUN_TIMEOUT="${RUN_TIMEOUT:-900}"   # a shared 2-core CPU is slow; the GPU run keeps 300 s
fi

echo "== environment"
date -u
"$PY" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "triton", "mlflow", "diffusers", "sklearn", "pydantic", "click"):
    try:
        print(f"  {name:10s}", importlib.import_module(name).__version__)
    except Exception as exc:  # noqa: BLE001
        print(f"  {name:10s} MISSING ({type(exc).__name__})")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

echo
echo "== 1. rdbench bench ddpm ${BENCH[*]}"
SECONDS=0
timeout "${BENCH_TIMEOUT:-180}" "${RDBENCH[@]}" bench ddpm "${BENCH[@]}" || echo "!! bench ddpm failed or timed out (rc $?)"
echo "(bench ddpm: ${SECONDS} s)"

echo
echo "== 2. rdbench run ddpm --dataset digits ${RUN[*]} (end to end)"
SECONDS=0
RUN_RC=0
timeout "${RUN_TIMEOUT:-300}" "${RDBENCH[@]}" run ddpm --dataset digits "${RUN[@]}" --experiment "$EXPERIMENT" \
  || RUN_RC=$?
RUN_WALL=$SECONDS
echo "(run ddpm: ${RUN_WALL} s end to end, rc ${RUN_RC}; target on one H200: under 180 s)"
"$PY" - "$EXPERIMENT" "$RUN_WALL" <<'PY' || echo "!! no run metrics"
import sys

import mlflow

experiment, wall = sys.argv[1], float(sys.argv[2])
client = mlflow.MlflowClient()
exp = client.get_experiment_by_name(experiment)
run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
m = run.data.metrics
capture = [v for k, v in run.data.params.items() if k.split(".")[-1] == "capture"]
print("run", run.info.run_id, run.info.status, "device", run.data.params.get("device"), "capture", capture)
print(f"  {'command wall time (s)':28s} {wall:.0f}")
for key in ["R", "R_final", "M_react", "M_diff", "M_diff_closed_form", "M_eps", "control.untrained.R",
            "control.oracle.R", "control.oracle_noise.R", "final_loss", "train_images_per_s", "sampling_s",
            "train_steps_done", "n_parameters", "wall_time_s"]:
    if key in m:
        print(f"  {key:28s} {m[key]:.6g}")
history = sorted(client.get_metric_history(run.info.run_id, "R_during_training"), key=lambda h: h.step)
print("  R_during_training by step:", ", ".join(f"{h.step}: {h.value:.4f}" for h in history))
print("  (before issue 19, H200: 0.0708 at 2000, 0.0707 at 4000, 0.0708 at 6000)")
loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda h: h.step)
print("  loss by step:", ", ".join(f"{h.step}: {h.value:.4f}" for h in loss[:: max(1, len(loss) // 8)]))
PY

echo
echo "== 3. scripts/gpu_phase_check.sh (Gray-Scott against the bandwidth bound)"
SECONDS=0
OUT="$OUT_DIR/phase" timeout "${PHASE_TIMEOUT:-150}" bash scripts/gpu_phase_check.sh \
  || echo "!! phase check failed or timed out (rc $?)"
echo "(phase check: ${SECONDS} s)"

echo
echo "== done on $DEVICE in $(( $(date +%s) - START_ALL )) s; log in $LOG"
