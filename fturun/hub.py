"""Hub reachability: fail fast and say what to do, instead of a long hang and a traceback."""

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
    from .errors import RecipeRuntimeError

    reason = hub_unusable_reason()
    if reason is None:
        return
    raise RecipeRuntimeError(
        f"training.push_to_hub: {reason}, so the model could not be uploaded after training. "
        "Remove training.push_to_hub (the model is saved in OUTPUT_DIR/model and can be "
        "uploaded later), or run where the Hub or your HF_ENDPOINT mirror is reachable")
