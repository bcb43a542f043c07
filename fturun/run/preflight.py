"""Pre-load checks of the model settings a library validates only once it loads (layer 4): the
``config_overrides`` of a model config (its fields, their types, rope scaling) checked against
the model's own config, ``generation.max_new_tokens`` against its positions, and
``tracking.registered_model_name`` as MLflow takes names; before any data or weights load (the
config alone is read), each located at its recipe key or the override that set it (exit 2)."""

from __future__ import annotations

import copy
import logging
import os

from ..core.errors import Problem, RecipeError
from ..core.suggest import suggest
from ..recipe.paths import resolve_path
from ..recipe.refs import component_ref

ROPE_KEYS = ("rope_scaling", "rope_parameters")


def check_model_settings(recipe) -> None:
    """Every check of this module: ``model.params.config_overrides``, the generation length,
    the registered model name."""
    check_config_overrides(recipe)
    check_generation_length(recipe)
    check_registered_name(recipe)


def check_config_overrides(recipe) -> None:
    """Raise :class:`RecipeError` with every problem of ``model.params.config_overrides``
    (:func:`config_override_problems`); nothing when the model's config cannot be read here (a
    Hub name not in the cache: the model component reports it when it loads)."""
    try:
        _, params = component_ref(recipe.data.get("model"))
    except (TypeError, ValueError, KeyError):
        return
    overrides = params.get("config_overrides") if isinstance(params, dict) else None
    if not isinstance(overrides, dict) or not overrides or not isinstance(params.get("path"), str):
        return
    config = _read_config(params, recipe.base_dir)
    if config is None:
        return
    found = config_override_problems(config, overrides)
    if found:
        raise RecipeError([Problem.located(recipe.locate, path, message, recipe.path)
                           for path, message in found])


def check_generation_length(recipe) -> None:
    """``generation.max_new_tokens`` must leave the prompt at least one of the model's
    positions (read from its config before anything loads): else generation fails with an
    IndexError after training. Raises :class:`RecipeError` at the key."""
    section = recipe.data.get("generation")
    new = section.get("max_new_tokens") if isinstance(section, dict) else None
    if not isinstance(new, int):
        return
    try:
        _, params = component_ref(recipe.data.get("model"))
    except (TypeError, ValueError, KeyError):
        return
    config = model_config(params, recipe.base_dir) if isinstance(params, dict) else None
    positions, field = model_positions(config)
    if positions is not None and new >= positions:
        raise RecipeError([Problem.located(
            recipe.locate, "$.generation.max_new_tokens",
            f"{new} new tokens do not fit the model's {positions} positions "
            f"({type(config).__name__}.{field}): the prompt needs some too; set it below "
            f"{positions}", recipe.path)])


def model_positions(config) -> tuple:
    """``(positions, field)``: how many tokens the model's position embeddings hold, or
    ``(None, None)`` (relative positions: no limit)."""
    for field in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value, field
    return None, None


def model_config(params: dict, base_dir: str):
    """The config of a ``pretrained`` model (``path``) or of a ``from_config`` one (``config``:
    a folder or an object of fields), read without any weights; None when not on this
    machine."""
    from transformers import AutoConfig

    if isinstance(params.get("path"), str):
        return _read_config(params, base_dir)
    config = params.get("config")
    if isinstance(config, str):
        return _read_config({"path": config}, base_dir)
    if isinstance(config, dict) and isinstance(config.get("model_type"), str):
        fields = {k: v for k, v in config.items() if k != "model_type"}
        try:
            return AutoConfig.for_model(config["model_type"], **fields)
        except Exception:  # noqa: BLE001 - the model component reports it when it builds
            return None
    return None


def check_registered_name(recipe) -> None:
    """``tracking.registered_model_name`` must be a name MLflow takes (not empty, no '/' or
    ':'): else the model is refused only when it is registered, after training."""
    from ..tracking.settings import model_name_problem

    section = recipe.data.get("tracking")
    name = section.get("registered_model_name") if isinstance(section, dict) else None
    problem = model_name_problem(name) if isinstance(name, str) else None
    if problem:
        raise RecipeError([Problem.located(recipe.locate, "$.tracking.registered_model_name",
                                           problem, recipe.path)])


def _read_config(params: dict, base_dir: str):
    """The model's config (no weights), or None when it is not on this machine."""
    from transformers import AutoConfig

    try:
        location = resolve_path(params["path"], base_dir)
    except Exception:  # noqa: BLE001 - a package not installed: the loader says so
        return None
    if not os.path.exists(location) and os.environ.get("HF_HUB_OFFLINE") != "1":
        return None  # a Hub name: not fetched before the run starts
    try:
        return AutoConfig.from_pretrained(location, revision=params.get("revision"),
                                          trust_remote_code=params.get("trust_remote_code",
                                                                       False))
    except Exception:  # noqa: BLE001 - unreadable here: the loader reports it when it loads
        return None


def config_override_problems(config, overrides: dict) -> list:
    """``[(json_path, message)]``: each override naming a field the config lacks, setting a
    value of the wrong type (the config class's own check), or rope scaling on a model without
    rotary embeddings or with values transformers would only warn about."""
    problems = []
    trial = copy.deepcopy(config)
    known = sorted(set(config.to_dict()) | set(ROPE_KEYS))
    name = type(config).__name__
    for key, value in overrides.items():
        where = f"$.model.params.config_overrides.{key}"
        if key in ROPE_KEYS:
            problem = rope_problem(trial, value)
            if problem:
                problems.append((where, problem))
            continue
        if key not in known:
            problems.append((where, f"{name} has no field '{key}'{suggest(key, known)}"))
            continue
        try:
            setattr(trial, key, value)
        except Exception as exc:  # noqa: BLE001 - the config class's validation, worded here
            problems.append((where, f"{name}.{key} cannot be {value!r}: "
                                    f"{_last_line(exc)} (it is {getattr(config, key)!r} now)"))
    return problems


def rope_problem(config, value) -> str | None:
    """Why ``value`` cannot be the config's rope scaling, else None: the model has no rotary
    position embeddings (BERT), it is not an object, or transformers' rope validation warns
    about it (an unknown ``rope_type``, a ``factor`` below 1, a missing key)."""
    name = type(config).__name__
    if not hasattr(config, "rope_parameters") or not hasattr(config, "validate_rope"):
        return (f"{name} has no rotary position embeddings, so rope scaling would do nothing; "
                "remove it")
    if not isinstance(value, dict):
        return "rope scaling is an object, e.g. {\"rope_type\": \"linear\", \"factor\": 2.0}"
    factor = value.get("factor")
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                               or factor < 1):
        return f"factor must be a number >= 1 (the scale of the positions), not {factor!r}"
    config.rope_parameters = {**(config.rope_parameters or {}), **value}
    warned = _warnings_of(config.validate_rope)
    return f"transformers refuses this rope scaling: {warned}" if warned else None


def _warnings_of(call) -> str | None:
    """The warnings transformers logs while ``call()`` runs (joined), or its error."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    level = logger.level  # a quiet console (or another command of this process) may have
    logger.setLevel(logging.WARNING)  # raised it: the check needs the warnings all the same
    logger.addHandler(handler)
    try:
        call()
    except (ValueError, KeyError, TypeError) as exc:
        return str(exc)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return "; ".join(r.getMessage() for r in records) or None


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = (lines[-1] if lines else type(exc).__name__).split(". Errors:")[0]
    return text if len(text) <= 200 else text[:200] + " ..."
