"""What a run records about itself in MLflow, as MLflow accepts it: the recipe flattened into
params, keys and values cut to the server's limits, the tags that make a run findable and
reproducible (version, recipe hash, overrides, plugins, git), and the environment."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from ..core.redaction import redact, redact_override

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_TAG_VALUE = 8000  # MLflow's limit on a tag value
MAX_KEY = 250  # MLflow's limit on a key
PACKAGES = ("fturun", "torch", "transformers", "datasets", "evaluate", "accelerate", "peft",
            "mlflow", "pluggy", "jsonschema", "deepspeed", "optuna", "tokenizers", "numpy")


def flatten(data, prefix="") -> dict:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b.0": 1, "a.b.1.c": 2}``; secrets redacted."""
    out = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: redact(prefix, data)}
    if not data and prefix:
        out[prefix] = json.dumps(data)
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list)):
            out.update(flatten(value, name))
        else:
            out[name] = redact(name, value)
    return out


def mlflow_key(key: str) -> str:
    """A key MLflow accepts: alphanumerics, ``_ - . : /`` and spaces, at most 250 characters."""
    return re.sub(r"[^\w\-. :/]", "_", str(key))[:MAX_KEY]


def param_value(value) -> str:
    """A param value as MLflow stores it, cut to the server's limit with a visible marker."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_VALUE:
        marker = "...[truncated; full value in the recipe artifact]"
        text = text[: MAX_PARAM_VALUE - len(marker)] + marker
    return text


def tag_value(key, value) -> str:
    """A tag value as MLflow stores it: secrets redacted, cut to the server's limit."""
    return str(redact(key, value))[:MAX_TAG_VALUE]


def plugins_tag(plugins) -> str:
    """The loaded plugins in one tag (one per plugin crowded the UI's tag list): the built-ins
    once, with their version and count, then each other plugin with its version
    (``builtin 0.1.0 (14); trl 0.1.0``); ``fturun plugins`` lists each by name."""
    ok = [p for p in plugins if p.status == "ok"]
    builtin = [p for p in ok if p.name.startswith("builtin.")]
    parts = []
    if builtin:
        versions = sorted({p.version for p in builtin})
        parts.append(f"builtin {', '.join(versions)} ({len(builtin)})")
    parts += [f"{p.name} {p.version}" for p in ok if not p.name.startswith("builtin.")]
    return "; ".join(parts)


def run_tags(recipe, plugins=()) -> dict:
    """Tags that make a run findable and reproducible: fturun's own, and MLflow's ``mlflow.user``
    and ``mlflow.source.*`` (the UI's "User" and "Source" columns: the recipe file, run
    locally, at its git commit)."""
    from .. import __version__

    path = os.path.abspath(recipe.path)
    tags = {"fturun.version": __version__, "fturun.recipe_path": path,
            "fturun.task": recipe.data.get("task", "sequence-classification"),
            "mlflow.user": _user(), "mlflow.source.name": path, "mlflow.source.type": "LOCAL"}
    try:
        with open(recipe.path, "rb") as f:
            tags["fturun.recipe_sha256"] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        pass
    if recipe.overrides:
        tags["fturun.overrides"] = " ".join(redact_override(o) for o in recipe.overrides)
    loaded = plugins_tag(plugins)
    if loaded:
        tags["fturun.plugins"] = loaded
    model = recipe.data.get("model")
    if isinstance(model, dict) and (model.get("params") or {}).get("trust_remote_code"):
        tags["fturun.trust_remote_code"] = "true"
    tags.update(git_info(recipe.path))
    return tags


def git_info(path: str) -> dict:
    """Commit and dirty flag of the git work tree holding ``path`` ({} outside git)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"],
                                capture_output=True, text=True, timeout=5, check=False)
        return {"fturun.git_commit": commit.stdout.strip(),
                "fturun.git_dirty": str(bool(status.stdout.strip())).lower(),
                "mlflow.source.git.commit": commit.stdout.strip()}
    except (OSError, subprocess.SubprocessError):
        return {}


def _user() -> str:
    """Who runs this: the login name (``LOGNAME``/``USER``, else the password database)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no USER
        return "unknown"


def environment() -> dict:
    """Python, platform and package versions, and the argument schemas the run validated
    against (the versions each was generated from, the installed ones), for the environment
    artifact."""
    from ..schema.installed import schema_sources

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version, "platform": platform.platform(), "packages": versions,
            "executable": sys.executable, "schemas": schema_sources()}
