"""Optuna's side of a study: the storage (in memory, an RDB URL or a journal file), the study
created or joined, the sampler and pruner, the trials that count toward ``n_trials``."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import warnings

from ..core.errors import RecipeRuntimeError
from .plan import SearchPlan, grid_values

SQLITE_TIMEOUT_S = 60  # how long a SQLite writer waits for another process's lock
HEARTBEAT_S = 60  # RDB storages: a running trial beats this often ...
GRACE_S = 180  # ... and is failed when a process sees it silent this long (its worker died)
OPEN_TRIES = 6  # concurrent processes creating one SQLite study's tables may collide


def safe_url(url: str | None) -> str:
    """A storage URL without its password."""
    if not url:
        return "in-memory"
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)

def open_storage(url: str | None):
    """The Optuna storage for ``search.storage`` (``$VARS`` expanded): None (in memory), a
    JournalStorage for a file path ending ``.log``/``.journal``, else an RDBStorage (SQLite waits
    up to a minute for another process's lock; a running trial beats a heartbeat so that a dead
    worker's trial is failed, not left running)."""
    if not url:
        return None
    import optuna

    url = os.path.expandvars(url)
    if "://" not in url:
        from optuna.storages import JournalStorage

        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # optuna < 4
            from optuna.storages import JournalFileStorage as JournalFileBackend
        path = os.path.abspath(os.path.expanduser(url))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:" and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(OPEN_TRIES):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
        except ImportError as exc:
            raise RecipeRuntimeError(f"search.storage {safe_url(url)}: the database driver is "
                                     f"not installed ({exc}); pip install it") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy errors: tables being created
            if attempt == OPEN_TRIES - 1 or not _is_db_error(exc):
                raise RecipeRuntimeError(f"search.storage {safe_url(url)}: cannot open it "
                                         f"({type(exc).__name__}: {str(exc)[:300]})") from None
            time.sleep(0.2 + random.random() * attempt)
    raise AssertionError("unreachable")

def _is_db_error(exc) -> bool:
    return type(exc).__module__.startswith("sqlalchemy")

def make_sampler(plan: SearchPlan, seed: int):
    import optuna

    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "grid":
        grid = {key: [json.dumps(v) for v in grid_values(entry)] if key in plan.encoded
                else grid_values(entry) for key, entry in plan.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)

def make_pruner(plan: SearchPlan):
    import optuna

    if plan.pruner == "none":
        return optuna.pruners.NopPruner()
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, plan.warmup_steps))
    if plan.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=plan.warmup_steps or "auto")
    return optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials,
                                       n_warmup_steps=plan.warmup_steps)

def open_study(plan: SearchPlan, storage):
    """Create the study, or load it when another process (or an earlier run) created it.
    Returns ``(study, created)``. The creator's sampler is seeded with the search seed (a study
    in one process is reproducible); a joining process's with a seed of its own, so that workers
    do not repeat each other's samples."""
    import optuna

    pruner = make_pruner(plan)
    if storage is None:
        return optuna.create_study(direction=plan.direction, pruner=pruner,
                                   sampler=make_sampler(plan, plan.seed)), True
    for attempt in range(OPEN_TRIES):
        try:
            study = optuna.create_study(storage=storage, study_name=plan.study_name,
                                        direction=plan.direction, pruner=pruner,
                                        sampler=make_sampler(plan, plan.seed))
            return study, True
        except optuna.exceptions.DuplicatedStudyError:
            joined_seed = (plan.seed + os.getpid() * 7919 + time.time_ns()) % (2**31)
            study = optuna.load_study(study_name=plan.study_name, storage=storage,
                                      sampler=make_sampler(plan, joined_seed), pruner=pruner)
            if study.direction.name.lower() != plan.direction:
                raise RecipeRuntimeError(
                    f"search: study '{plan.study_name}' in {safe_url(plan.storage)} was created "
                    f"to {study.direction.name.lower()}, this recipe says {plan.direction}; "
                    "use another search.study_name") from None
            return study, False
        except Exception as exc:  # noqa: BLE001
            if attempt == OPEN_TRIES - 1 or not _is_db_error(exc):
                raise
            time.sleep(0.2 + random.random() * attempt)
    raise AssertionError("unreachable")

def counted_trials(study) -> int:
    """Trials that count toward ``n_trials``: finished or running (in any process)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)))

class _HideFailedTrialLogs(logging.Filter):
    """fturun prints each failed trial itself (without a traceback)."""

    def filter(self, record):
        return not re.match(r"Trial \d+ failed with", str(record.msg))

def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _HideFailedTrialLogs) for f in logger.filters):
        logger.addFilter(_HideFailedTrialLogs())
