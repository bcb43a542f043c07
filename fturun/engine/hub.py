"""Hub reachability: fail fast and say what to do, instead of a long hang and a traceback.

:func:`check_recipe_hub_access` runs before anything heavy is imported or loaded: the Hub names
a recipe's built-in components would fetch, and ``training.push_to_hub``."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=4)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT`` or huggingface.co) accepts a TCP connection."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_unusable_reason() -> str | None:
    """Why the Hub cannot be used now (``HF_HUB_OFFLINE``, or no route), or None when it can."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable():
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        return f"the Hub ({endpoint}) is not reachable"
    return None


def hub_unreachable_message(what: str, name: str) -> str | None:
    """A message for a Hub name that cannot be fetched, or None when it can (or is cached)."""
    reason = hub_unusable_reason()
    if reason is None or _cached(what, name):
        return None
    return (f"{what} '{name}' is a Hub name, and {reason} and it is not in the local cache. "
            f"Use a local path (or 'package:NAME/path'), download it where the Hub is reachable "
            f"and copy the cache (HF_HOME), or point HF_ENDPOINT at a mirror.")


def _cached(what: str, name: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        repo_type = "dataset" if what == "dataset" else "model"
        return any(r.repo_id == name and r.repo_type == repo_type
                   for r in scan_cache_dir().repos)
    except Exception:
        return False


def check_push_to_hub(training: dict) -> None:
    """``training.push_to_hub`` uploads after training: refuse it before training when the Hub
    cannot be reached, rather than after an hour of training."""
    if not training.get("push_to_hub"):
        return
    from ..core.errors import RecipeRuntimeError

    reason = hub_unusable_reason()
    if reason is None:
        return
    raise RecipeRuntimeError(
        f"training.push_to_hub: {reason}, so the model could not be uploaded after training. "
        "Remove training.push_to_hub (the model is saved in OUTPUT_DIR/model and can be "
        "uploaded later), or run where the Hub or your HF_ENDPOINT mirror is reachable")


#: the built-in components that fetch from the Hub: (section, component name) -> (what they
#: fetch, the params that may name a Hub repository)
_HUB_PARAMS = {
    ("model", "pretrained"): ("model", ("path", "tokenizer")),
    ("model", "from_config"): ("model", ("tokenizer", "config")),
    ("data", "hub"): ("dataset", ("path",)),
}


def recipe_hub_names(data: dict, base_dir: str = "") -> list:
    """``[(recipe key, what, name)]``: the Hub names the recipe's built-in components would
    fetch (a ``pretrained`` or ``from_config`` model's path, tokenizer and config, a ``hub``
    dataset's path); a local path (one that exists, or is written as a path) is none."""
    found = []
    data_section = data.get("data") if isinstance(data.get("data"), dict) else {}
    refs = [(f"data.{split}", "data", data_section.get(split))
            for split in ("train", "eval", "test")]  # in the order a run loads them
    train = data_section.get("train")
    if isinstance(train, list):  # a mix of sources: data.train[i].dataset
        refs[0:1] = [(f"data.train[{i}].dataset", "data", entry.get("dataset"))
                     for i, entry in enumerate(train) if isinstance(entry, dict)]
    refs.append(("model", "model", data.get("model")))
    for key, section, ref in refs:
        if not isinstance(ref, dict) or (section, ref.get("name")) not in _HUB_PARAMS:
            continue
        what, names = _HUB_PARAMS[(section, ref.get("name"))]
        params = ref.get("params") if isinstance(ref.get("params"), dict) else {}
        for param in names:
            value = params.get(param)
            if isinstance(value, str) and _is_hub_name(value, base_dir):
                found.append((f"{key}.params.{param}", what, value))
    return found


def _is_hub_name(name: str, base_dir: str) -> bool:
    if name.startswith(("package:", ".", "/", "~")) or name.count("/") > 1:
        return False
    return not (os.path.exists(name) or (base_dir and os.path.exists(os.path.join(base_dir,
                                                                                  name))))


def check_recipe_hub_access(data: dict, base_dir: str = "") -> None:
    """Raise :class:`~fturun.core.errors.RecipeRuntimeError` when the recipe needs the Hub and it
    cannot be used (a Hub name not in the local cache, or ``training.push_to_hub``): before
    any model or data is loaded, so the failure comes within a second."""
    from ..core.errors import RecipeRuntimeError

    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    check_push_to_hub(training)
    for key, what, name in recipe_hub_names(data, base_dir):
        message = hub_unreachable_message(what, name)
        if message:
            raise RecipeRuntimeError(f"{key}: {message}")
