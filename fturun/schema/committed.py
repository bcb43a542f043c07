"""Regenerate fturun's committed schema files (after changing a built-in component, or after a
new lock of transformers/accelerate: ``dev/lock.py``)::

    python -m fturun.schema.committed          # write
    python -m fturun.schema.committed --check  # exit 1 if a committed file is stale

- ``fturun/schema/training_arguments.schema.json``: the ``training`` section, generated from
  the installed transformers' ``TrainingArguments`` dataclass (:mod:`.generate`), so validation
  never imports transformers; the reference for editors and docs, made from the locked versions.
  A run with other installed versions validates against a schema generated from those
  (:mod:`fturun.schema.installed`).
- ``schemas/recipe.schema.json``: the full recipe schema composed from the built-in plugins (what
  ``fturun schema`` prints when no third-party plugin is installed), for editors via ``"$schema"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..plugin.manager import load_plugins
from .compose import TRAINING_SCHEMA_FILE, compose_schema
from .generate import training_arguments_schema

ROOT = Path(__file__).resolve().parent.parent.parent
RECIPE_SCHEMA_FILE = ROOT / "schemas" / "recipe.schema.json"


def dump(data) -> str:
    """The committed form of a schema file: sorted keys, two-space indent, final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def generated_files() -> dict:
    """Path -> text of every generated file, computed from the installed packages and built-ins."""
    files = {TRAINING_SCHEMA_FILE: dump(training_arguments_schema())}
    # the recipe schema embeds the training schema: compose after writing/refreshing it
    os.environ["FTURUN_DISABLE_PLUGINS"] = ""
    loaded = load_plugins(extra_plugins=None)
    builtins = [p for p in loaded.plugins if p.name.startswith("builtin.")]
    assert all(p.status == "ok" for p in builtins), [p.errors for p in builtins]
    files[RECIPE_SCHEMA_FILE] = dump(
        compose_schema(loaded.registry, training_schema=json.loads(files[TRAINING_SCHEMA_FILE]),
                       only_plugins={p.name for p in builtins})
    )
    return files


def main(argv=None) -> int:
    """Write the generated files, or with ``--check`` report which are stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
