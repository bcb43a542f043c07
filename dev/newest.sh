#!/usr/bin/env bash
# Will the next dependency release break fturun? Installs the NEWEST versions pyproject.toml
# allows (no constraints.txt) into a fresh virtualenv and runs the unit tier there:
#
#     bash dev/newest.sh            # venv in a temporary folder, removed afterwards
#     bash dev/newest.sh DIR        # keep the venv in DIR (reused when it exists)
#
# Exits with pytest's status. A failure here, while the suite passes with constraints.txt,
# is a coming break for users: fix fturun (or cap the range in pyproject.toml), then lock anew
# (python dev/lock.py) once the whole suite passes with the new versions.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-$(mktemp -d)/venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade --upgrade-strategy eager -e '.[test]'
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("newest allowed:", ", ".join(f"{p} {version(p)}" for p in
      ("transformers", "accelerate", "peft", "datasets", "mlflow", "trl", "optuna")))
PY
"$VENV/bin/python" -m pytest -q -m unit -p no:cacheprovider
