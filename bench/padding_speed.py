"""Benchmark: dynamic padding (fturun's default: each batch padded to its longest example) vs the
Trainer guide's padding="max_length", max_length=512, on real tweets: train samples/s of each.

    python bench/padding_speed.py [--steps 8]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FTURUN, fturun_train_metrics, run, tweets_recipe, write_tweets  # noqa


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(tmp, 2000, 64)
        for padding in ("longest", "max_length"):
            recipe = tweets_recipe(tmp, args.steps, max_length=512, padding=padding)
            out = os.path.join(tmp, padding)
            run(FTURUN + [recipe, f"training.output_dir={out}"], tmp)
            results[padding] = fturun_train_metrics(out)["train_samples_per_second"]
    print(f"tweets, MiniLM, batch 16, {args.steps} steps, max_length 512")
    print(f"train samples/s: dynamic padding {results['longest']:.2f}, "
          f"padding to 512 {results['max_length']:.2f}, speedup "
          f"{results['longest'] / results['max_length']:.1f}x")
    print(f"\nreproduce: python bench/padding_speed.py --steps {args.steps}")


if __name__ == "__main__":
    main()
