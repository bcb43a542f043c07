"""Benchmark: wall time of `fturun validate recipes/*.json` and `fturun plugins` (target: median
under 0.5 s on a 2-core machine; validation imports neither torch, transformers, peft nor mlflow).

    python bench/validate_speed.py [--runs 15]
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, runs):
    """Median and min wall time of ``cmd`` over ``runs`` runs (after one warm-up)."""
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    fturun = [sys.executable, "-m", "fturun"]
    recipes = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.json")))
    cases = {
        f"fturun validate recipes/*.json ({len(recipes)} recipes)": fturun + ["validate"] + recipes,
        "fturun plugins": fturun + ["plugins"],
        # target: under 3 s, no weight read (tests/test_plan.py checks the no-weight part)
        "fturun plan recipes/lora_cls.json": fturun + [
            "plan", os.path.join(ROOT, "recipes", "lora_cls.json")],
        "for scale: python -c 'import transformers'": [sys.executable, "-c",
                                                       "import transformers"],
    }
    print(f"{'command':<55} {'median s':>9} {'min s':>7}")
    for name, cmd in cases.items():
        median, best = timed(cmd, args.runs)
        print(f"{name:<55} {median:>9.3f} {best:>7.3f}")
    print(f"\nreproduce: python bench/validate_speed.py --runs {args.runs}")


if __name__ == "__main__":
    main()
