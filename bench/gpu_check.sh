#!/usr/bin/env bash
# The GPU check (issue 7): on one GPU, the tweet classification recipe with bf16 next to the
# equivalent hand-written Trainer script, printing samples/s for both and the GPU's peak memory;
# --compile adds both with torch_compile. Under 8 minutes on one GPU (about 3 without --compile).
# Then bench/gpu_big.py: the recipe as QLoRA (needs bitsandbytes on the GPU machine) and as FSDP2,
# and bench/utilisation.py (matmul peak, MFU), printed next to the plain bf16 run (issue 18).
#
#   1. here (CPU machine):   bash bench/gpu_prepare.sh          fills bench/gpu_carry/ (ignored)
#   2. on the GPU machine:   bash bench/gpu_check.sh [--compile] [gpu_check.py options]
#      with the device tool: run(command="bash bench/gpu_check.sh --compile",
#                                carry=["bench/gpu_carry"], timeout_s=540)
#   dry run here, on CPU:    bash bench/gpu_check.sh --cpu       (the project's .venv, no install)
#   --time-to-accuracy adds bench/time_to_accuracy.py (issue 21): fturun's default recipe
#   (bf16, TF32, loader workers, length-grouped batches) vs the script's default arguments
#
# On the GPU machine it installs bench/gpu_carry/wheels into the python3 that holds PyTorch
# (no network: pip resolves against what is installed and takes only what is missing from the
# carried wheels; a package it cannot find there is named in pip's error), then runs fturun from
# this checkout (PYTHONPATH), so fturun's own dependencies such as mlflow are not needed.
# Figures land in $OUT/gpu_check.json when OUT is set (the device tool sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GPU_CHECK_STARTED=${GPU_CHECK_STARTED:-$(date +%s)}
if [[ " $* " == *" --cpu "* ]]; then
  PY=${PY:-.venv/bin/python}
else
  PY=${PY:-python3}
  if [ -d bench/gpu_carry/wheels ]; then
    "$PY" -m pip install -q --no-index --find-links bench/gpu_carry/wheels \
      -r bench/gpu_carry/wheels/requirements.txt
  fi
  "$PY" -c "import torch, transformers, datasets, evaluate, peft, accelerate, jsonschema, pluggy" || {
    echo "missing packages on this machine: run bench/gpu_prepare.sh on the CPU machine and carry bench/gpu_carry"; exit 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
# then the big-model runs (QLoRA, FSDP) and the utilisation benchmark, next to the plain bf16
# run, within the same 8 minutes (bench/gpu_big.py counts from GPU_CHECK_STARTED)
status=0
"$PY" bench/gpu_check.py "$@" || status=$?
"$PY" bench/gpu_big.py "$@" || status=$?
exit $status
