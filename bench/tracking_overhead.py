"""Benchmark: the same recipe with MLflow tracking on (a local `mlflow server`, a metric logged
at every step, MLflow's system metrics on as by default) vs off: train samples/s ratio (target
>= 0.98). The runs alternate (on, off, off, on, on, off, ...) after a warm-up round, so that a
machine that slows down or speeds up meanwhile weighs on both. The throughput of a run is its
steady state: 16 samples over its median step time (`median_step_seconds` in
train_results.json, from one step's end to the next, logging included), so that a burst of
another process on a shared machine, which slows a few steps, does not decide the figure; the
ratio is the median of the rounds' ratios. The Trainer's train_samples_per_second (whole loop)
is printed too. `--system-variant` adds tracking on with `tracking.system_metrics: false` to
each round, to show what the monitor costs. The server runs without its job runner
(`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`: eight idle processes polling otherwise).

    python bench/tracking_overhead.py [--steps 60] [--repeats 4] [--system-variant]
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FTURUN, fturun_train_metrics, run, tweets_recipe, write_tweets  # noqa


def start_server(folder):
    """A local mlflow server; returns (process, uri) once healthy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    process = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1", "--backend-store-uri",
                                f"sqlite:///{folder}/mlflow.db", "--artifacts-destination",
                                f"{folder}/artifacts"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    for _ in range(180):
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return process, uri
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("mlflow server did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--system-variant", action="store_true",
                        help="also run tracking on without system metrics")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(tmp, 2000, 64)
        server, uri = start_server(tmp)
        try:
            tracked = tweets_recipe(tmp, args.steps, logging_steps=1, name="on.json",
                                    tracking={"tracking_uri": uri, "experiment": "overhead",
                                              "log_model": False})
            no_system = tweets_recipe(tmp, args.steps, logging_steps=1, name="nosys.json",
                                      tracking={"tracking_uri": uri, "experiment": "overhead",
                                                "log_model": False, "system_metrics": False})
            untracked = tweets_recipe(tmp, args.steps, logging_steps=1, name="off.json")
            on, off, nosys = [], [], []
            variants = [(tracked, on), (untracked, off)]
            if args.system_variant:
                variants.append((no_system, nosys))
            for repeat in range(args.repeats + 1):  # the first round warms the caches
                for recipe, results in (variants if repeat % 2 else variants[::-1]):
                    out = os.path.join(tmp, f"out{repeat}")
                    run(FTURUN + [recipe, f"training.output_dir={out}"], tmp)
                    if repeat:
                        metrics = fturun_train_metrics(out)
                        results.append((16 / metrics["median_step_seconds"],
                                        metrics["train_samples_per_second"]))
        finally:
            server.terminate()
    def ratios(a, b, i=0):
        return [x[i] / y[i] for x, y in zip(a, b)]

    def median(runs, i=0):
        return statistics.median(x[i] for x in runs)

    rounds = ratios(on, off)
    print(f"tweets, MiniLM, {args.steps} steps x 16, metrics logged every step, "
          f"{args.repeats} alternating rounds after a warm-up round")
    print(f"steady-state samples/s (medians): tracking on {median(on):.2f}, off {median(off):.2f}")
    print(f"ratio on / off: {statistics.median(rounds):.3f} (median of the rounds; "
          "target >= 0.98)")
    print("per round (on / off): " + ", ".join(f"{r:.3f}" for r in rounds))
    print(f"whole-loop train_samples_per_second (medians): on {median(on, 1):.2f}, off "
          f"{median(off, 1):.2f}, ratio per round "
          + ", ".join(f"{r:.3f}" for r in ratios(on, off, 1)))
    if nosys:
        print("tracking on without system metrics / off, per round: "
              + ", ".join(f"{r:.3f}" for r in ratios(nosys, off))
              + f"; median {statistics.median(ratios(nosys, off)):.3f}")
    print(f"\nreproduce: python bench/tracking_overhead.py --steps {args.steps} "
          f"--repeats {args.repeats}" + (" --system-variant" if args.system_variant else ""))


if __name__ == "__main__":
    main()
