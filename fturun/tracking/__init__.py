"""tracking (layer 3): MLflow tracking owned by fturun.

The Trainer's own MLflow callback is never used: one run per
recipe run, reattached on ``--resume``; params = flattened recipe + effective TrainingArguments,
logged in batches within the server's limits; step-wise metrics; tags; artifacts; the model.

Only rank 0 of a multi-process launch talks to MLflow. A tracking server that goes away mid-run
never stops training (see :mod:`fturun.tracking.tracker`).

- :mod:`~fturun.tracking.settings`: the one reader of a recipe's ``tracking`` section and URI
- :mod:`~fturun.tracking.tracker`: :class:`Tracker` (the run's lifecycle) and :class:`NullTracker`
- :mod:`~fturun.tracking.params`: params and tags as MLflow accepts them
- :mod:`~fturun.tracking.artifacts`: the end-of-run artifacts
- :mod:`~fturun.tracking.queries`: what ``fturun runs`` and ``fturun rerun`` read back
- :mod:`~fturun.tracking.system`: MLflow's system metrics monitor of a run
- :mod:`~fturun.tracking.model`: the run's MLflow Model (transformers flavor, or the pyfunc
  wrapper of :mod:`~fturun.tracking.pyfunc_model`, which imports nothing of fturun)
- :mod:`~fturun.tracking.model_registry`: versions, tags, aliases, ``fturun promote``
"""

from .artifacts import log_run_results, plot_curves
from .params import environment, flatten, git_info, mlflow_key, param_value, run_tags
from .queries import RunRow, fetch_run_recipe, list_runs, open_client, prepare_rerun
from .settings import (
    HTTP_DEFAULTS,
    TrackingSettings,
    check_reachable,
    check_recipe_store,
    default_tracking_uri,
    mlflow_client,
    tracking_active,
)
from .tracker import METRICS_FILE, RUN_FILE, NullTracker, Tracker

__all__ = [
    "HTTP_DEFAULTS", "METRICS_FILE", "RUN_FILE", "NullTracker", "RunRow", "Tracker",
    "TrackingSettings", "check_reachable", "check_recipe_store", "default_tracking_uri",
    "environment", "fetch_run_recipe", "flatten", "git_info", "list_runs", "log_run_results",
    "mlflow_client", "mlflow_key", "open_client", "param_value", "plot_curves", "prepare_rerun",
    "run_tags", "tracking_active",
]
