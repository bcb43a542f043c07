"""The test tiers of tests/conftest.py: a test is marked server/subprocess/run from the fixtures
it uses and unit otherwise, and a unit test that starts a process or connects to a server fails."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent

pytest_plugins = ["pytester"]

SAMPLE = '''
import socket
import subprocess
import sys

import pytest


def test_plain():
    assert sys.platform


def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"])


def test_swallows_the_refusal():
    try:
        subprocess.run([sys.executable, "-V"])
    except BaseException:
        pass


def test_connects_to_a_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=5)


def test_finds_no_server_and_runs_a_probe():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 9), timeout=5)  # nothing listens on discard
    assert subprocess.run(["uname"], capture_output=True).returncode == 0


@pytest.mark.subprocess
def test_marked_by_hand():
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0


def test_uses_run_fturun(run_fturun):
    pass


def test_uses_the_server(mlflow_server):
    pass


@pytest.fixture(scope="module")
def lora_run():
    return "trained"


def test_uses_a_trained_run(lora_run):
    pass


@pytest.mark.slow
def test_slow():
    pass
'''


def _sample(pytester):
    pytester.makepyfile(helpers=(TESTS / "helpers.py").read_text())
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_sample=SAMPLE)
    pytester.makeini("[pytest]\nmarkers =\n    slow\n    server\n    subprocess\n    run\n"
                     "    unit\n")


def test_the_tiers_come_from_the_fixtures_a_test_uses(pytester):
    _sample(pytester)
    tiers = {}
    for tier in ("unit", "subprocess", "server", "run", "slow"):
        result = pytester.runpytest_inprocess("--collect-only", "-q", "-m", tier)
        tiers[tier] = sorted(line.split("::")[1] for line in result.outlines if "::" in line)
    assert tiers == {
        "unit": ["test_connects_to_a_server", "test_finds_no_server_and_runs_a_probe",
                 "test_plain", "test_starts_a_process", "test_swallows_the_refusal"],
        "subprocess": ["test_marked_by_hand", "test_uses_run_fturun", "test_uses_the_server"],
        "server": ["test_uses_the_server"],
        "run": ["test_uses_a_trained_run"],
        "slow": ["test_slow"],
    }


def test_a_unit_test_that_starts_a_process_or_connects_to_a_server_fails(pytester):
    _sample(pytester)
    result = pytester.runpytest_inprocess("-m", "unit", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2, errors=1)  # the swallowing one: in teardown
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_swallows_the_refusal*",
        "a unit test (no server, subprocess, run or slow marker) started the process "
        "[[]'*python*', '-V'[]] (and caught the failure)",
        "*test_starts_a_process*",
        "a unit test (no server, subprocess, run or slow marker) started the process "
        "[[]'*python*', '-c', 'pass'[]]: use the fixture that starts it, or mark the test",
        "*test_connects_to_a_server*",
        "a unit test (no server, subprocess, run or slow marker) connected to a server at "
        "('127.0.0.1', *): use the fixture that starts it, or mark the test",
    ])
