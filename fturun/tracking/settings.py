"""The one reader of a recipe's ``tracking`` section: whether to track, where (the tracking URI,
resolved once), under which experiment and run name, with which tags, and whether to log and
register the model. Also the server check that runs before anything heavy is loaded, and the
one way an MLflow client is made, and how fturun's experiments are created."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..core.dist import is_main_process
from ..core.errors import RecipeRuntimeError, UsageError

#: MLflow's HTTP retries, unless set in the environment: its defaults (7 retries, backoff
#: factor 2, 120 s timeout) hold a call for about 4 minutes when the server is down
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


#: the tags of an experiment fturun creates: a model-training experiment, so that MLflow's UI
#: opens it on its runs (without the tag MLflow 3's UI may open it as a GenAI experiment)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow 3's own default: SQLite in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or \
        f"sqlite:///{os.path.abspath('mlflow.db')}"


@dataclass(frozen=True)
class TrackingSettings:
    """A recipe's ``tracking`` section with its defaults applied."""

    enabled: bool = True
    tracking_uri: str = ""  # resolved: the recipe's, else :func:`default_tracking_uri`
    experiment: str = ""  # default: the recipe file's stem
    run_name: str | None = None
    tags: dict = field(default_factory=dict)
    log_model: bool = True
    registered_model_name: str | None = None
    registered_model_alias: str | None = None  # moved to each new version
    system_metrics: bool = True  # MLflow's own monitor: CPU, memory, disk, network, GPU

    @classmethod
    def from_recipe(cls, recipe) -> TrackingSettings:
        """The settings of ``recipe`` (a :class:`~fturun.recipe.load.Recipe`). Raises
        :class:`UsageError` for an alias MLflow reserves."""
        section = recipe.data.get("tracking") or {}
        alias = section.get("registered_model_alias")
        if alias and (problem := alias_problem(alias)):
            raise UsageError(f"tracking.registered_model_alias: {problem}")
        return cls(enabled=bool(section.get("enabled", True)),
                   tracking_uri=section.get("tracking_uri") or default_tracking_uri(),
                   experiment=section.get("experiment") or _stem(recipe.path),
                   run_name=section.get("run_name"),
                   tags=dict(section.get("tags") or {}),
                   log_model=bool(section.get("log_model", True)),
                   registered_model_name=section.get("registered_model_name"),
                   registered_model_alias=alias,
                   system_metrics=bool(section.get("system_metrics", True)))

    @property
    def active(self) -> bool:
        """Whether this process tracks: tracking is enabled and this is the main process (only
        rank 0 of a launch talks to MLflow)."""
        return self.enabled and is_main_process()


def alias_problem(alias: str) -> str | None:
    """What is wrong with ``alias`` as a registered model alias (None: nothing): MLflow keeps
    ``latest`` and ``v<N>`` for itself and allows letters, digits, ``_`` and ``-``."""
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        return (f"'{alias}' is reserved by MLflow ('latest' and v1, v2, ... name versions); "
                "choose another name, e.g. champion")
    if not re.fullmatch(r"[\w-]{1,255}", alias):
        return f"'{alias}' is not an alias: use letters, digits, '_' and '-' (e.g. champion)"
    return None


def model_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a registered model name (None: nothing): MLflow refuses
    an empty name and one with '/' or ':' (they separate the parts of a ``models:/`` URI)."""
    if not name.strip():
        return "'' is empty: name the registered model, e.g. bbc-lora"
    if "/" in name or ":" in name:
        better = re.sub(r"[/:]+", "-", name)
        return (f"'{name}' cannot name a registered model: MLflow refuses '/' and ':' in "
                f"names (they separate the parts of models:/NAME@ALIAS); e.g. '{better}'")
    return None


def tracking_active(recipe) -> bool:
    """Whether this process tracks ``recipe`` (:attr:`TrackingSettings.active`)."""
    return TrackingSettings.from_recipe(recipe).active


def check_reachable(uri: str, timeout: float = 5.0, reading: bool = False) -> None:
    """Raise within seconds, before any model is loaded, when the store at ``uri`` cannot be
    used: a scheme MLflow has no store for, a SQLite database MLflow could not write (it writes
    even to list runs), or, when only ``reading`` (``fturun runs``), no database at all
    (:func:`check_store`); an HTTP tracking server that does not answer."""
    check_store(uri, reading)
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise RecipeRuntimeError(
        f"MLflow tracking server {uri} is not reachable ({reason}). Start it, fix "
        "tracking.tracking_uri or MLFLOW_TRACKING_URI, or run without tracking: "
        "tracking.enabled=false")


def check_recipe_store(recipe) -> None:
    """:func:`check_reachable` on the recipe's tracking URI when this process tracks it."""
    settings = TrackingSettings.from_recipe(recipe)
    if settings.active:
        check_reachable(settings.tracking_uri)


#: the schemes MLflow 3 has tracking stores for (a path without a scheme is a file store)
STORE_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https",
                 "databricks", "databricks-uc", "uc")


def check_store(uri: str, reading: bool = False) -> None:
    """The checks of :func:`check_reachable` that need no network (see there)."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a path
        scheme = ""
    if scheme not in STORE_SCHEMES:
        raise UsageError(
            f"tracking URI '{uri}': MLflow has no store for '{scheme}://' (it knows "
            "sqlite:///PATH.db, http(s)://HOST:PORT, postgresql://, mysql://, mssql://, "
            "databricks, file:PATH); fix tracking.tracking_uri, --tracking-uri or "
            "MLFLOW_TRACKING_URI, or run without tracking: tracking.enabled=false")
    if scheme != "sqlite" or uri.rstrip("/").endswith(":memory:"):
        return
    path = os.path.abspath(os.path.expanduser(uri.split(":///", 1)[-1] if ":///" in uri
                                              else uri[len("sqlite:"):].lstrip("/")))
    folder = os.path.dirname(path)
    if reading and not os.path.isfile(path):
        raise UsageError(f"tracking URI '{uri}': there is no MLflow database at {path}, so no "
                         "runs were tracked there; check the path (sqlite:////abs/path.db has "
                         "four slashes, sqlite:///rel/path.db three)")
    target = path if os.path.exists(path) else folder
    if os.path.exists(target) and not os.access(target, os.W_OK) or \
            os.path.isfile(path) and not os.access(folder, os.W_OK):
        raise RecipeRuntimeError(
            f"tracking URI '{uri}': MLflow cannot write the SQLite database {path} (it writes "
            "to it even to list runs, and its journal beside it); copy it to a writable "
            "folder and use that URI, or make the folder writable for this user")


def mlflow_client(uri: str):
    """An ``MlflowClient`` for ``uri`` whose HTTP calls give up within about a minute when the
    server is down (:data:`HTTP_DEFAULTS`, unless set in the environment)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextmanager
def using_tracking_uri(uri: str):
    """MLflow's global tracking URI set to ``uri`` while the block runs: the fluent functions
    (``log_model``) and the resolution of ``models:/`` URIs (registering a version) use it,
    whatever client made the call."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
