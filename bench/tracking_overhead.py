"""Benchmark: the same recipe with MLflow tracking on (a local `mlflow server`, a metric logged
at every step, MLflow's system metrics on as by default) vs off: train samples/s ratio (target
>= 0.98); also tracking on with `tracking.system_metrics: false`, to show what the monitor costs.

    python bench/tracking_overhead.py [--steps 40] [--repeats 2]
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
                               stderr=subprocess.DEVNULL)
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
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
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
            for repeat in range(args.repeats + 1):  # the first round warms the caches
                for recipe, results in ((tracked, on), (untracked, off), (no_system, nosys)):
                    out = os.path.join(tmp, f"out{repeat}")
                    run(FTURUN + [recipe, f"training.output_dir={out}"], tmp)
                    if repeat:
                        results.append(fturun_train_metrics(out)["train_samples_per_second"])
        finally:
            server.terminate()
    ratio = statistics.median(on) / statistics.median(off)
    print(f"tweets, MiniLM, {args.steps} steps x 16, metrics logged every step, "
          f"{args.repeats} alternating repeats (medians)")
    print(f"train samples/s: tracking on {statistics.median(on):.2f}, off "
          f"{statistics.median(off):.2f}, ratio {ratio:.3f} (target >= 0.98)")
    print(f"tracking on without system metrics: {statistics.median(nosys):.2f}, ratio "
          f"{statistics.median(nosys) / statistics.median(off):.3f}")
    print("per round (on / off): " + ", ".join(f"{a / b:.3f}" for a, b in zip(on, off)))
    print(f"\nreproduce: python bench/tracking_overhead.py --steps {args.steps} "
          f"--repeats {args.repeats}")


if __name__ == "__main__":
    main()
