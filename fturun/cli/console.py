"""The console is fturun's: what the libraries under it print is let through only when a user
can act on it. The CLI applies the policy once per process (:func:`apply_console_policy`);
``--verbose`` / ``-v`` (or ``FTURUN_VERBOSE=1``, which a launcher's processes inherit) shows
everything.

The policy, all of it:

- :data:`QUIET`: library messages that say nothing a fturun user can act on, each with the
  reason. They are dropped where they are logged (a filter on the one logger that logs them, a
  ``warnings`` filter for a Python warning); a message a library prints with ``print`` cannot be
  caught, so a setting that makes a library complain is fixed at its source instead (the
  generation config, a model's ``loss_type``).
- A library message that is let through has its terminal escape codes removed when the console
  is not a terminal (a log file shows ``BertForSequenceClassification LOAD REPORT``, not
  ``\\x1b[1m...``).
- Under a launcher (torchrun), the processes other than rank 0 would repeat rank 0's messages:
  there the libraries' warnings and progress bars are off and their loggers show errors only.
  fturun's own messages come from rank 0 (:func:`fturun.core.dist.quiet_off_main`); a rank's own
  error is still printed by that rank.
- :data:`ALLOWED`: the library messages a run may still show, on purpose (the example-recipe
  console test, ``tests/test_console.py``, fails on any other warning).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass

from ..core.dist import is_main_process
from ..run.progress import is_terminal

#: set to 1 by ``--verbose``; a launcher's processes inherit it
VERBOSE_ENV = "FTURUN_VERBOSE"
#: MLflow prints its own run/experiment links (to its GenAI view) unless this is true
MLFLOW_LINKS_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@dataclass(frozen=True)
class Quiet:
    """One library message fturun keeps off the console: where it comes from (a logger's name,
    or a Python warning category), a regular expression its text matches (searched), and why
    it says nothing actionable."""

    source: str  # logger name, or "FutureWarning" / "UserWarning" / "DeprecationWarning"
    pattern: str
    reason: str


QUIET = (
    Quiet("DeepSpeed", r"Setting accelerator to CPU",
          "DeepSpeed says it whenever it is imported (transformers imports it when it is "
          "installed), even for a recipe that does not use DeepSpeed; fturun's 'engine:' line "
          "says which device the run uses"),
    Quiet("transformers.modeling_utils", r"LOAD REPORT(?![\s\S]*(MISMATCH|CONVERSION))",
          "a newly initialised task head (MISSING) and an unused pretraining head (UNEXPECTED) "
          "are what fine-tuning a pretrained model means, and a resumed run loads the base "
          "model again before its checkpoint; a report with MISMATCH or CONVERSION rows is "
          "shown, because it explains the error that follows it"),
    Quiet("transformers.modeling_utils", r"This checkpoint seem corrupted\. The tied weights",
          "said when the checkpoint has no weights for a head the task adds (the packaged "
          "MiniLM, a sentence-embedding model, has no masked-LM head): the head is newly "
          "initialised and trained, like a classifier head; nothing is corrupted"),
    Quiet("transformers.trainer_utils", r"mtime may not be reliable",
          "transformers then orders checkpoints by their number, which is what fturun expects"),
    Quiet("mlflow.system_metrics.system_metrics_monitor",
          r"GPU metrics|monitoring system metrics|system metrics monitoring",
          "MLflow says when it starts and stops sampling the run's system metrics and that it "
          "skips GPU metrics without a GPU; the metrics are in the run "
          "(tracking.system_metrics: false turns them off)"),
    Quiet("mlflow.store.db.utils", r"(Creating initial|Updating) (MLflow )?database tables",
          "MLflow creates its tables the first time a folder's mlflow.db is used"),
    Quiet("mlflow.transformers.signature", r"Running model prediction to infer",
          "MLflow infers the logged model's signature by running it on the input example; "
          "the model's pipeline and signature are in the run"),
    Quiet("mlflow.store.model_registry.abstract_store", r"Waiting up to \d+ seconds",
          "MLflow waits for a new model version to be ready; fturun prints the version when it "
          "is"),
    Quiet("mlflow.tracking._model_registry.client", r"Created version|Successfully registered",
          "MLflow's note of a new version; fturun's 'MLflow Model' line names it, with the "
          "alias decision"),
    Quiet("mlflow.tracking._model_registry.fluent", r"Registered model .* already exists|"
          r"Successfully registered model|Created version",
          "the same notes from MLflow's fluent API, which fturun's 'MLflow Model' line says"),
    Quiet("FutureWarning", r"`is_gradient_checkpointing` is deprecated",
          "peft asks the model for a property transformers v5 renamed; nothing in a recipe "
          "causes it or can avoid it"),
)

#: console lines that look like warnings and may still show (the example-recipe console test
#: allows these and fails on any other): each is a regular expression and why it is shown
ALLOWED = (
    (r"^(warning|note): ", "fturun's own warnings and notes: each says what happened and what "
                           "to do about it"),
)

#: the libraries whose loggers show only errors on the ranks other than 0 (DeepSpeed sets its
#: logger's level when it is imported: the :data:`QUIET` filter on it does the same there)
LIBRARY_LOGGERS = ("transformers", "datasets", "peft", "accelerate", "torch.distributed")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STATE = {"verbose": False, "installed": False, "exported": False, "links_set": False}
_ADDED: list = []  # the warnings filters this module added


def verbose() -> bool:
    """Whether the console shows everything (``--verbose``, or ``FTURUN_VERBOSE=1``)."""
    return _STATE["verbose"]


def apply_console_policy(verbose_flag: bool = False) -> None:
    """Apply the console policy (module docstring) to this process; ``verbose_flag``, or
    ``FTURUN_VERBOSE=1`` in the environment, shows everything. Safe to call again (the last
    call decides)."""
    if _STATE["exported"] and not verbose_flag:  # set by an earlier call in this process
        os.environ.pop(VERBOSE_ENV, None)
        _STATE["exported"] = False
    on = verbose_flag or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    _STATE["verbose"] = on
    if verbose_flag and not os.environ.get(VERBOSE_ENV):
        os.environ[VERBOSE_ENV] = "1"  # the processes a launcher starts show everything too
        _STATE["exported"] = True
    _install_log_filters()
    for added in _ADDED:  # an earlier call's
        while added in warnings.filters:
            warnings.filters.remove(added)
    _ADDED.clear()
    getattr(warnings, "_filters_mutated", lambda: None)()  # what filterwarnings() would do
    if on:
        if _STATE["links_set"]:  # set by an earlier, quiet call in this process
            os.environ.pop(MLFLOW_LINKS_ENV, None)
            _STATE["links_set"] = False
        return
    # MLflow's own "View run ... at:" / "View experiment at:" lines link to its GenAI view and
    # repeat fturun's: fturun prints its links on the training view (fturun.tracking.links)
    if MLFLOW_LINKS_ENV not in os.environ:
        os.environ[MLFLOW_LINKS_ENV] = "true"
        _STATE["links_set"] = True
    for quiet in QUIET:
        category = _WARNING_CATEGORIES.get(quiet.source)
        if category is not None:
            warnings.filterwarnings("ignore", message=f".*{quiet.pattern}", category=category)
            _ADDED.append(warnings.filters[0])
    if not is_main_process():
        _quiet_other_rank()


_WARNING_CATEGORIES = {"FutureWarning": FutureWarning, "UserWarning": UserWarning,
                       "DeprecationWarning": DeprecationWarning}


class _ConsoleFilter(logging.Filter):
    """Drops the :data:`QUIET` messages of one logger (unless verbose), strips escape codes
    when the console is not a terminal, and on the ranks other than 0 lets only errors
    through."""

    def __init__(self, patterns):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        if _STATE["verbose"]:
            return True
        if not is_main_process() and record.levelno < logging.ERROR:
            return False
        text = record.getMessage()
        if any(p.search(text) for p in self.patterns):
            return False
        if "\x1b[" in text and not is_terminal(sys.stderr):
            record.msg, record.args = _ANSI.sub("", text), ()
        return True


def _install_log_filters() -> None:
    """One :class:`_ConsoleFilter` on each logger that :data:`QUIET` names (a logger's filters
    see only what is logged on it, so each message is named with the logger that logs it).
    Installed once; the filters read the current verbosity."""
    if _STATE["installed"]:
        return
    patterns: dict = {}
    for quiet in QUIET:
        if quiet.source not in _WARNING_CATEGORIES:
            patterns.setdefault(quiet.source, []).append(quiet.pattern)
    for name, found in patterns.items():
        logging.getLogger(name).addFilter(_ConsoleFilter(found))
    _STATE["installed"] = True


def _quiet_other_rank() -> None:
    """A rank other than 0: libraries' warnings and progress bars off, loggers at errors (the
    variables are read when the libraries are imported, so a user's own setting wins)."""
    warnings.simplefilter("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # torch's C++ warnings (DDP's find_unused_parameters note, printed by every rank)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
