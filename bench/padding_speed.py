"""Benchmark: dynamic padding (fturun's default: each batch padded to its longest example) vs the
Trainer guide's padding="max_length", max_length=512, on real tweets: steady-state train
samples/s of each (the first step, which carries one-time start-up work, is taken out by timing a
1-step run too: samples/s = batch * (N - 1) / (runtime(N) - runtime(1))).

    python bench/padding_speed.py [--steps 8] [--dynamic-steps 40]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FTURUN, fturun_train_metrics, run, tweets_recipe, write_tweets  # noqa

BATCH = 16


def runtime(tmp, steps, padding):
    recipe = tweets_recipe(tmp, steps, batch=BATCH, max_length=512, padding=padding,
                           name=f"recipe-{padding}-{steps}.json")
    out = os.path.join(tmp, f"{padding}-{steps}")
    run(FTURUN + [recipe, f"training.output_dir={out}"], tmp)
    return fturun_train_metrics(out)["train_runtime"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps of the padded-to-512 run")
    parser.add_argument("--dynamic-steps", type=int, default=40,
                        help="steps of the dynamic-padding run (it is much faster)")
    args = parser.parse_args()
    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(tmp, 2000, 64)
        for padding, steps in (("longest", args.dynamic_steps), ("max_length", args.steps)):
            first = runtime(tmp, 1, padding)
            total = runtime(tmp, steps, padding)
            speed[padding] = BATCH * (steps - 1) / (total - first)
    print(f"tweets, MiniLM full fine-tune, batch {BATCH}, max_length 512; steady state over "
          f"{args.dynamic_steps} (dynamic) and {args.steps} (padded) steps")
    print(f"train samples/s: dynamic padding {speed['longest']:.2f}, padding to 512 "
          f"{speed['max_length']:.2f}, speedup {speed['longest'] / speed['max_length']:.1f}x")
    print(f"\nreproduce: python bench/padding_speed.py --steps {args.steps} "
          f"--dynamic-steps {args.dynamic_steps}")


if __name__ == "__main__":
    main()
