"""The big-model part of the GPU check (issue 18), run by bench/gpu_check.sh after gpu_check.py:
on one GPU, the tweet recipe as QLoRA (4-bit NF4 base + LoRA, bf16 compute) and as an FSDP2 full
fine-tune (one process, the launcher's variables set as ``torchrun --nproc_per_node 1`` sets
them), each measured by bench/gpu_probe.py (steady samples/s, peak memory), then
bench/utilisation.py (matmul peak, achieved FLOP/s and MFU of full fine-tuning and LoRA).
Printed next to gpu_check.py's plain bf16 run (read from its gpu_check.json); written to
OUT/gpu_big.json. Everything stops starting once the check's 8 minutes (counted from
``GPU_CHECK_STARTED``, set by gpu_check.sh) are nearly spent.

    bash bench/gpu_check.sh            # runs gpu_check.py, then this
    python bench/gpu_big.py --cpu      # dry run here: both recipes are refused (exit 2) on CPU
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

from common import tweets_recipe  # noqa: E402
from gpu_check import gpu_description, prepare_data, prepare_model, probe  # noqa: E402

TOTAL_SECONDS = 8 * 60 - 20  # the whole check (gpu_check.py and this), with a margin
LORA = {"name": "lora", "params": {"r": 16, "lora_alpha": 32,
                                   "target_modules": ["query", "key", "value", "dense"]}}


def recipes(data, model, work, steps, batch, max_length, cuda):
    """``{name: (recipe path, extra environment)}``: the QLoRA and FSDP variants."""
    made = {}
    for name in ("qlora", "fsdp"):
        path = tweets_recipe(data, steps, batch=batch, max_length=max_length,
                             name=f"recipe-{name}.json")
        with open(path) as f:
            recipe = json.load(f)
        recipe["model"]["params"]["path"] = model
        recipe["training"].update({"output_dir": os.path.join(work, f"fturun-{name}"),
                                   "bf16": cuda, "dataloader_num_workers": 0})
        env = {}
        if name == "qlora":
            recipe["model"]["params"]["quantization"] = {
                "bits": 4, "quant_type": "nf4", "compute_dtype": "bfloat16",
                "double_quant": True, "skip_modules": ["classifier", "pooler"]}
            recipe["adapter"] = LORA
            recipe["training"]["learning_rate"] = 2e-4
        else:
            recipe["training"].update({"fsdp": True, "fsdp_config": {
                "version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"],
                "state_dict_type": "FULL_STATE_DICT"}})
            env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}
        with open(path, "w") as f:
            json.dump(recipe, f, indent=2)
        made[name] = (path, env)
    return made


def utilisation(work, env, timeout, cpu):
    out = os.path.join(work, "utilisation.json")
    command = [sys.executable, os.path.join(BENCH, "utilisation.py"), "--json", out]
    if cpu:
        command += ["--steps", "1", "--batch", "2", "--seq-len", "32", "--gemm", "512"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    print(result.stdout.strip() or result.stderr[-2000:], flush=True)
    if result.returncode != 0 or not os.path.exists(out):
        return {"failed": result.returncode}
    with open(out) as f:
        return json.load(f)


def plain_bf16_row(out_dir):
    """gpu_check.py's fturun run (bf16 on a GPU, fp32 in a dry run), from its report."""
    try:
        with open(os.path.join(out_dir, "gpu_check.json")) as f:
            runs = json.load(f)["runs"]
    except (OSError, ValueError, KeyError):
        return None
    return next((r for r in runs if r.get("name", "").startswith("fturun ")
                 and "compile" not in r["name"]), None)


def print_table(rows, gpu, util):
    memory = "peak alloc / reserved GiB" if gpu else "peak RSS GiB"
    print(f"\n{'run':<22} {'samples/s steady':>17} {memory:>26} {'train loss':>10}")
    for r in rows:
        if r is None:
            continue
        if "steady" not in r:
            print(f"{r['name']:<22} {r.get('refused') or r.get('skipped') or 'failed'}")
            continue
        steady = (r.get("steady") or {}).get("samples_per_second")
        mem = (f"{r['peak_allocated_gib']:.2f} / {r['peak_reserved_gib']:.2f}" if gpu
               else f"{r['peak_rss_gib']:.2f}")
        loss = r.get("train_loss")
        print(f"{r['name']:<22} {steady if steady is not None else '-':>17} {mem:>26} "
              f"{(f'{loss:.4f}' if loss is not None else '-'):>10}")
    for name, run in (util or {}).get("runs", {}).items():
        print(f"utilisation {name:<10} {run['tokens_per_s']:>12,.0f} tokens/s  "
              f"MFU {run['mfu']:.1%} of {util['gemm_peak_tflops']:.3g} TFLOP/s "
              f"({util['dtype']} GEMM)")


def refusal(work, name):
    """The first error line of a run fturun refused (exit 2: a hardware rule)."""
    try:
        with open(os.path.join(work, f"{name}.log")) as f:
            text = f.read()
    except OSError:
        return None
    errors = [line for line in text.splitlines() if "::$." in line]
    return f"refused: {errors[0]}" if errors else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU")
    parser.add_argument("--steps", type=int, help="steps per run (default 120; --cpu 4)")
    parser.add_argument("--batch", type=int, help="per-device batch (default 32; --cpu 8)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       "fturun-gpu-big"))
    parser.add_argument("--out", default=os.environ.get("OUT"))
    args, _ = parser.parse_known_args(argv)  # gpu_check.py's own options are passed too
    started = float(os.environ.get("GPU_CHECK_STARTED") or time.time())
    steps, batch = args.steps or (4 if args.cpu else 120), args.batch or (8 if args.cpu else 32)
    gpu = gpu_description()
    os.makedirs(args.work, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT"):
        env.pop(key, None)
    model = prepare_model(args.work)
    data = prepare_data(args.work, steps * batch, 16)
    print(f"big models: {steps} steps x batch {batch}; bitsandbytes "
          f"{'installed' if importlib.util.find_spec('bitsandbytes') else 'NOT installed'}",
          flush=True)
    rows = []
    for name, (path, extra) in recipes(data, model, args.work, steps, batch, args.max_length,
                                       gpu is not None).items():
        left = TOTAL_SECONDS - (time.time() - started)
        if left < 45:
            rows.append({"name": f"fturun {name}", "skipped": "skipped (time budget spent)"})
            continue
        row = probe(f"fturun_{name}", ["-m", "fturun", path], args.work, min(20, steps // 2),
                    {**env, **extra}, timeout=left)
        row["name"] = f"fturun {name}"
        if "failed" in row:
            row["refused"] = refusal(args.work, f"fturun_{name}")
        rows.append(row)
    left = TOTAL_SECONDS - (time.time() - started)
    util = utilisation(args.work, env, left, args.cpu) if left > 30 else {"skipped": True}
    out_dir = args.out or args.work
    print_table([plain_bf16_row(out_dir)] + rows, gpu, util)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gpu_big.json"), "w") as f:
        json.dump({"device": gpu or "cpu", "runs": rows, "utilisation": util}, f, indent=2)
    expected_refusal = args.cpu and all(r.get("refused") for r in rows)
    return 0 if expected_refusal or not any("failed" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
