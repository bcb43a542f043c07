"""Screenshots of MLflow's UI as a teammate opens it from the links fturun prints: the run, its
experiment and the registered model version, each on the training view
(``?workflowType=machine_learning``), taken with headless Chromium (Debian's ``chromium``).

    python bench/ui_screenshots.py [--out DIR]

Starts a real ``mlflow server`` on 127.0.0.1, runs a tiny tracked run of recipes/lora_cls.json
registered as ``bbc-topics@champion``, reads the links from fturun's console and saves
``run.png``, ``experiment.png``, ``registry.png`` (and ``run-genai.png``: the run's page without
the parameter, MLflow's default view) in DIR (default: a new temporary folder). Prints the
files and the command that reproduces them.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
        "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
        "training.per_device_train_batch_size=8"]


def start_server(folder):
    """A real mlflow server on a free port; returns (process, uri)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    log = open(os.path.join(folder, "server.log"), "a")
    mlflow_exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
    process = subprocess.Popen(
        [mlflow_exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", f"{folder}/artifacts"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return process, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("mlflow server did not start; see server.log")


def screenshot(url, path):
    """One page, rendered by headless Chromium after its scripts ran."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1440,900",
                    "--virtual-time-budget=15000", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=180)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the PNGs (default: a new temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="fturun-ui-")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fturun-ui-server-")
    server, uri = start_server(work)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "fturun", os.path.join(ROOT, "recipes", "lora_cls.json"),
             *TINY, f"training.output_dir={work}/out", f"tracking.tracking_uri={uri}",
             "tracking.experiment=bbc-topics", "tracking.registered_model_name=bbc-topics",
             "tracking.registered_model_alias=champion", "tracking.system_metrics=false"],
            capture_output=True, text=True, cwd=work, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if run.returncode != 0:
            raise SystemExit(run.stdout[-2000:] + run.stderr[-2000:])
        links = {
            "run": re.search(r"open it: (\S+)", run.stdout).group(1),
            "experiment": re.search(r"its experiment: (\S+)", run.stdout).group(1),
            "registry": re.search(r"its registry page: (\S+)", run.stdout).group(1),
        }
        links["run-genai"] = links["run"].split("?")[0]
        for name, url in links.items():
            print(f"{name}: {url} -> {screenshot(url, os.path.join(out, name + '.png'))}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    print(f"reproduce: python bench/ui_screenshots.py --out {out}")


if __name__ == "__main__":
    main()
