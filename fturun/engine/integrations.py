"""The ``training.report_to`` integrations a run reports to besides fturun's own MLflow
tracking, checked before anything loads: each must be importable here, or the run stops with
exit 2 naming the package to install (the Trainer would fail only after the model and data are
loaded, with a traceback). Found with ``importlib.util.find_spec``: nothing is imported."""

from __future__ import annotations

import importlib.util

from ..core.errors import Problem, RecipeError

#: integration -> (modules of which one must be importable, the pip package to install)
INTEGRATIONS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "comet_ml": (("comet_ml",), "comet-ml"),
    "neptune": (("neptune",), "neptune"),
    "clearml": (("clearml",), "clearml"),
    "codecarbon": (("codecarbon",), "codecarbon"),
    "dvclive": (("dvclive",), "dvclive"),
    "azure_ml": (("azureml.core",), "azureml-core"),
    "dagshub": (("dagshub",), "dagshub"),
    "flyte": (("flytekit",), "flytekit"),
    "swanlab": (("swanlab",), "swanlab"),
    "trackio": (("trackio",), "trackio"),
}

#: what ``report_to`` may also hold: fturun tracks MLflow itself; kubeflow needs no package
NO_PACKAGE = ("mlflow", "none", "all", "kubeflow")


def installed(module: str) -> bool:
    """Whether ``module`` (dotted names too) can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing
        return False


def integration_problems(recipe) -> list:
    """A located :class:`~fturun.core.errors.Problem` per ``training.report_to`` integration of
    ``recipe`` that cannot be imported here."""
    value = (recipe.data.get("training") or {}).get("report_to")
    names = [value] if isinstance(value, str) else list(value or [])
    problems = []
    for index, name in enumerate(names):
        if name in NO_PACKAGE or name not in INTEGRATIONS:
            continue  # an unknown name is the schema's error
        modules, package = INTEGRATIONS[name]
        if any(installed(m) for m in modules):
            continue
        path = ("training", "report_to") + (() if isinstance(value, str) else (index,))
        file, line, col = recipe.locate(path)
        where = "$." + ".".join(map(str, path[:2])) + "".join(f"[{i}]" for i in path[2:])
        problems.append(Problem(file, where, f"{name!r} needs the {package} package, which is "
                                f"not installed: pip install {package}, or remove {name!r} "
                                "from training.report_to", line, col))
    return problems


def check_integrations(recipe) -> None:
    """Raise :class:`~fturun.core.errors.RecipeError` (exit 2) with every problem of
    :func:`integration_problems`."""
    problems = integration_problems(recipe)
    if problems:
        raise RecipeError(problems)
