"""Benchmark: fturun vs the equivalent hand-written Trainer script (bench/handwritten_cls.py) on
the same data, model, seed and arguments: train samples/s ratio (target >= 0.98) and seconds to
the first optimizer step (target: fturun at most 2 s slower); and a second run of the same
recipe, whose tokenization datasets' cache skips (seconds to first step, cold vs warm cache).
fturun runs with ``train_sampling_strategy=random`` here (the script's batches): this measures
the runner, not its speed defaults (bench/time_to_accuracy.py does). Figures are medians with
[min-max] over the alternating repeats; the ratio is taken per repeat.

    python bench/runner_overhead.py [--steps 40] [--repeats 2]
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FTURUN, ROOT, fturun_train_metrics, run, tweets_recipe, write_tweets  # noqa


def spread(values, fmt="{:.2f}") -> str:
    """``median [min-max]``."""
    return (fmt.format(statistics.median(values)) + " [" + fmt.format(min(values)) + "-"
            + fmt.format(max(values)) + "]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=20000)
    args = parser.parse_args()
    import json

    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(tmp, args.train_rows, 256)
        recipe = tweets_recipe(tmp, args.steps)
        cache = os.path.join(tmp, "hf-datasets-cache")
        env = {"HF_DATASETS_CACHE": cache}
        ours, theirs, first_ours, first_theirs = [], [], [], []
        cold = warm = None
        for repeat in range(args.repeats):
            out = os.path.join(tmp, f"ft{repeat}")
            run(FTURUN + [recipe, f"training.output_dir={out}",
                          "training.train_sampling_strategy=random"], tmp, env)
            metrics = fturun_train_metrics(out)
            ours.append(metrics["train_samples_per_second"])
            first_ours.append(metrics["seconds_to_first_step"])
            if repeat == 0:
                cold = metrics["seconds_to_first_step"]
            elif warm is None:
                warm = metrics["seconds_to_first_step"]
            _, stdout = run([sys.executable, os.path.join(ROOT, "bench", "handwritten_cls.py"),
                             "--train", "train.csv", "--eval", "eval.csv", "--output-dir",
                             os.path.join(tmp, f"hw{repeat}"), "--text-column", "text",
                             "--label-column", "sentiment", "--max-length", "64",
                             "--max-steps", str(args.steps), "--batch-size", "16"], tmp, env)
            hand = json.loads(stdout.strip().splitlines()[-1])
            theirs.append(hand["train_samples_per_second"])
            first_theirs.append(hand["seconds_to_first_step"])
    print(f"train rows {args.train_rows}, {args.steps} steps x 16, max_length 64, "
          f"{args.repeats} alternating repeats (medians)")
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"train samples/s: fturun {spread(ours)}, hand-written {spread(theirs)}, ratio "
          f"{spread(ratios, '{:.3f}')} per repeat (target >= 0.99)")
    # warm-cache runs only (repeat >= 1) for the first-step comparison, both sides warm
    ft_warm = statistics.median(first_ours[1:] or first_ours)
    hw_warm = statistics.median(first_theirs[1:] or first_theirs)
    print(f"seconds to first step (warm cache): fturun {ft_warm:.2f}, hand-written "
          f"{hw_warm:.2f}, difference {ft_warm - hw_warm:+.2f} s (target <= +2 s)")
    if warm is not None:
        print(f"fturun second run of the same recipe: first step after {cold:.2f} s cold "
              f"(tokenizing {args.train_rows} rows) vs {warm:.2f} s warm (cache hit)")
    print(f"\nreproduce: python bench/runner_overhead.py --steps {args.steps} "
          f"--repeats {args.repeats} --train-rows {args.train_rows}")


if __name__ == "__main__":
    main()
