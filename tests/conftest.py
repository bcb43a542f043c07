"""Shared fixtures: offline Hub, the CLI run in-process or as a real process, distributions
pip-installed into a folder, the session's real `mlflow server`; and the test tiers.

Tiers (markers, set here from the fixtures a test uses, so they cannot drift):

- ``server``: uses the real `mlflow server` (the ``mlflow_server`` fixture);
- ``subprocess``: starts processes (``python -m fturun``, pip, torchrun, a probe interpreter)
  through a fixture below, or is marked so by hand where it starts one itself;
- ``run``: trains a model in this process, a recipe run end to end (from the fixtures in
  :data:`RUN_FIXTURES`, or marked so by hand);
- ``slow``: over ~60 s (marked by hand);
- ``unit``: none of these. ``python -m pytest -m unit`` is the inner loop; a unit test that
  starts a process or connects to a server fails (:func:`_unit_tier_guard`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, call_cli

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# the fixtures that put a test in a tier (item.fixturenames holds every fixture a test
# uses, those its fixtures use included)
SERVER_FIXTURES = {"mlflow_server"}
SUBPROCESS_FIXTURES = {"run_fturun", "start_fturun", "pip_install_target", "modules_imported_by",
                       "mlflow_server"}
# module fixtures that train a model in this process (a recipe run end to end)
RUN_FIXTURES = {"lora_run", "finished_run"}
NOT_UNIT = ("server", "subprocess", "run", "slow")
# the probes that describe the machine and the code (platform.processor() runs `uname -p`,
# a run is tagged with its recipe's `git rev-parse HEAD`): no run, no server, milliseconds;
# allowed in the unit tier
SYSTEM_PROBES = {"uname", "git"}


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)
        if used & SUBPROCESS_FIXTURES:
            item.add_marker(pytest.mark.subprocess)
        if used & RUN_FIXTURES:
            item.add_marker(pytest.mark.run)
        if not any(item.get_closest_marker(name) for name in NOT_UNIT):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tier_guard(request, monkeypatch):
    """A ``unit`` test that starts a process (but the :data:`SYSTEM_PROBES`) or connects to a
    server over TCP fails (the process is not started, the connection is closed), so the tier
    stays what it says. A connection nothing answers (a refused one) is no server: allowed."""
    if request.node.get_closest_marker("unit") is None or "pytester" in request.fixturenames:
        yield  # (a pytester session in this process guards its own tests)
        return
    caught = []

    def refuse(what):
        caught.append(what)
        # pytest's Failed is no Exception: an `except Exception` of the code under test
        # does not swallow it
        pytest.fail(f"a unit test (no server, subprocess, run or slow marker) {what}: use the "
                    "fixture that starts it, or mark the test", pytrace=False)

    def no_process(self, args, *rest, **kwargs):
        program = args if isinstance(args, (str, bytes)) else args[0]
        if os.path.basename(os.fsdecode(program).split()[0]) in SYSTEM_PROBES:
            return real_execute_child(self, args, *rest, **kwargs)
        refuse(f"started the process {args!r}")

    def no_server(self, address):
        real_connect(self, address)  # nothing listening: refused, as the code expects
        if self.family in (socket.AF_INET, socket.AF_INET6):
            self.close()
            refuse(f"connected to a server at {address!r}")

    def no_server_ex(self, address):
        code = real_connect_ex(self, address)
        if code == 0 and self.family in (socket.AF_INET, socket.AF_INET6):
            self.close()
            refuse(f"connected to a server at {address!r}")
        return code

    real_execute_child = subprocess.Popen._execute_child
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    monkeypatch.setattr(subprocess.Popen, "_execute_child", no_process)
    monkeypatch.setattr(socket.socket, "connect", no_server)
    monkeypatch.setattr(socket.socket, "connect_ex", no_server_ex)
    yield
    if caught and not getattr(request.node, "_failed_in_call", False):  # swallowed there
        pytest.fail("a unit test (no server, subprocess, run or slow marker) " + "; ".join(caught)
                    + " (and caught the failure)", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item._failed_in_call = report.failed
    return report


@pytest.fixture
def cli(capsys):
    """``cli(*args)``: ``fturun ARGS`` run in-process; returns ``(exit_code, stdout, stderr)``."""
    return lambda *args: call_cli(capsys, *args)


@pytest.fixture(scope="session")
def registry():
    """The registry of the built-in (and installed) plugins."""
    from fturun.plugin.manager import default_plugins

    return default_plugins().registry


@pytest.fixture(scope="session")
def tokenizer():
    """The packaged MiniLM's tokenizer."""
    from helpers import MODEL
    from transformers import AutoTokenizer

    from fturun.recipe.paths import resolve_path

    return AutoTokenizer.from_pretrained(resolve_path(MODEL))




@pytest.fixture(scope="session")
def run_fturun():
    """``run_fturun(*args, env=None, cwd=None, timeout=120)``: ``python -m fturun ARGS`` as a
    real process, run to its end; returns the CompletedProcess (text)."""
    def run(*args, env=None, cwd=None, timeout=120):
        return subprocess.run([sys.executable, "-m", "fturun", *map(str, args)],
                              capture_output=True, text=True, env={**os.environ, **(env or {})},
                              cwd=cwd or ROOT, timeout=timeout)
    return run


@pytest.fixture
def start_fturun():
    """``start_fturun(*args, env=None, stdout=PIPE, stderr=PIPE)``: ``python -m fturun ARGS``
    started in the background (unbuffered, from the repository root); returns the Popen. What
    is still running when the test ends is killed."""
    started = []

    def start(*args, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        process = subprocess.Popen([sys.executable, "-m", "fturun", *map(str, args)], cwd=ROOT,
                                   env=full_env, stdout=stdout, stderr=stderr, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _pip_install_target(target: Path, *sources: Path, clean_copy: Path | None = None) -> Path:
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


@pytest.fixture(scope="session")
def pip_install_target():
    """``pip_install_target(target, *sources, clean_copy=None)``: pip-install the distributions
    at ``sources`` (no dependencies: the venv's serve) into the folder ``target``
    (``--target``); returns ``target``, to put on PYTHONPATH (``helpers.site_env``) so a
    process sees their entry points. ``clean_copy``: copy each source there first, without the
    build leftovers (build/, dist/, egg-info, outputs) a developer's tree may hold."""
    return _pip_install_target


@pytest.fixture(scope="session")
def modules_imported_by():
    """``modules_imported_by(site, code, modules)``: which of ``modules`` a fresh interpreter
    has imported after running ``code`` with the plugins in ``site`` visible (a plugin must
    import nothing heavy at load)."""
    import json

    from helpers import site_env

    def probe(site: Path, code: str, modules) -> list:
        script = (f"{code}\nimport json, sys\n"
                  f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env={**os.environ, **site_env(site)})
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])
    return probe


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory, pip_install_target):
    """A folder with the test plugin distributions pip-installed into it."""
    packages = sorted((Path(__file__).parent / "plugin_packages").iterdir())
    return pip_install_target(tmp_path_factory.mktemp("plugin-site"),
                              *[p for p in packages if (p / "pyproject.toml").exists()])


def _import_installed(site: Path, module_name: str):
    """Import ``module_name`` from ``site``; yield it, then take ``site`` off ``sys.path``
    again so other test modules do not see its entry point."""
    import importlib

    from fturun.plugin import manager as plugins

    sys.path.insert(0, str(site))
    try:
        module = importlib.import_module(module_name)
        assert Path(module.__file__).is_relative_to(site)
        yield module
    finally:
        sys.path.remove(str(site))
        plugins._DEFAULT = None


@pytest.fixture(scope="session")
def example_site(tmp_path_factory, pip_install_target):
    """A folder with plugins/fturun-example pip-installed into it (``--target``), from a clean
    copy (no stale build/ or egg-info of an earlier build gets in)."""
    work = tmp_path_factory.mktemp("example-plugin")
    return pip_install_target(work / "site", ROOT / "plugins" / "fturun-example",
                              clean_copy=work)


@pytest.fixture(scope="module")
def example(example_site):
    """The installed ``fturun_example`` module, imported in this process."""
    yield from _import_installed(example_site, "fturun_example")


@pytest.fixture(scope="module")
def example_loaded(example):
    """The built-ins and the example plugin, loaded in-process with fturun.testing."""
    from fturun import testing

    return testing.load_plugin(example, "example")


@pytest.fixture(scope="session")
def author_site(tmp_path_factory, pip_install_target):
    """tests/plugin_packages/author_plugin pip-installed into a folder of its own."""
    work = tmp_path_factory.mktemp("author-plugin")
    return pip_install_target(work / "site", Path(__file__).parent / "plugin_packages"
                              / "author_plugin", clean_copy=work)


@pytest.fixture(scope="module")
def author(author_site):
    """The installed ``fturun_author_plugin`` module, imported in this process."""
    yield from _import_installed(author_site, "fturun_author_plugin")


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
