"""Write ``constraints.txt``: the exact versions of every package of a virtualenv in which the
suite passed, for ``.ci/run``, the README's test command and the docs' figures.

    python dev/lock.py                # from ./.venv (the README's test environment)
    python dev/lock.py --venv PATH    # from another virtualenv

``pyproject.toml`` keeps the open ranges users install from; this file pins what CI and the
developers test with. After a new lock, regenerate the committed schemas from it
(``python -m fturun.schema.committed``, ``python -m fturun_trl.settings``) and run the suite.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
#: never pinned: the project and its first-party plugins (installed from this tree), and pip's
#: own tools
SKIP = {"fturun", "fturun-trl", "fturun-example", "pip", "setuptools", "wheel"}


def freeze(venv: Path) -> list:
    """``name==version`` of each package installed in ``venv`` (editable installs left out; a
    local version label such as ``+cpu`` dropped: ``torch==2.13.0`` matches the CPU and the CUDA
    build of that release)."""
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze",
                          "--exclude-editable"], check=True, capture_output=True, text=True).stdout
    pins = []
    for line in out.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;+]+)", line)
        if not match:
            continue  # a URL or path requirement: not something a constraint can pin
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        if name not in SKIP:
            pins.append(f"{name}=={match.group(2)}")
    return sorted(pins)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".venv"), help="the virtualenv to freeze")
    args = parser.parse_args(argv)
    venv = Path(args.venv)
    if not (venv / "bin" / "python").exists():
        print(f"error: {venv} is not a virtualenv (no bin/python); create it with the README's "
              "test command first", file=sys.stderr)
        return 2
    pins = freeze(venv)
    header = [f"# the versions the suite passed with ({date.today().isoformat()}): "
              "written by `python dev/lock.py`, used by .ci/run",
              "# and the README's test command (`pip install -c constraints.txt -e '.[test]'`)"]
    LOCK.write_text("\n".join(header + pins) + "\n")
    print(f"wrote {LOCK} ({len(pins)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
