"""``fturun explain RECIPE [KEY]``: each value a run of the recipe uses, and where it came from.

A value comes from, in this order of precedence:

- the recipe: the file and line (line:col) in the ``extends`` chain that set it, or the
  command line's override;
- a speed default fturun chooses on this machine where the recipe leaves the key unset
  (:mod:`fturun.engine.speed_defaults`), with its reason;
- the default of a component's params schema (``adapter`` ``lora``'s ``lora_dropout``);
- the recipe schema's own default (``seed``);
- TrainingArguments' default in the installed transformers (shown for a ``training.*`` KEY
  asked for by name: the full list would be every argument).

Nothing is loaded: no model, no data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import UsageError
from ..core.suggest import suggest
from ..recipe.refs import component_ref
from ..schema.sections import COMPONENT_SECTIONS

#: where a value came from
RECIPE, OVERRIDE, SPEED, COMPONENT, SCHEMA, TRAINER = (
    "recipe", "override", "speed default", "component default", "schema default",
    "Trainer default")
#: ``data`` keys holding dataset components
DATASET_KEYS = ("train", "eval", "test")
#: top-level recipe defaults (the recipe schema's)
TOP_DEFAULTS = {"seed": 42, "task": "sequence-classification"}


@dataclass
class Origin:
    """Where one value came from."""

    key: str  # dotted, e.g. training.learning_rate
    value: object
    source: str  # one of RECIPE ... TRAINER
    where: str  # file:line:col, the override, the component, the reason

    def line(self) -> str:
        import json

        return f"{self.key} = {json.dumps(self.value)}  [{self.source}: {self.where}]"


def explain(recipe, registry, key: str | None = None) -> list:
    """The :class:`Origin` of each value (under ``key``, when given: a key or a section).
    Raises :class:`UsageError` for a key no recipe, default or schema knows."""
    origins = recipe_origins(recipe)
    known = {o.key for o in origins}
    for origin in speed_origins(recipe) + component_origins(recipe, registry) + \
            schema_origins(recipe):
        if origin.key not in known:
            origins.append(origin)
            known.add(origin.key)
    if key is None:
        return origins
    chosen = [o for o in origins if o.key == key or o.key.startswith(key + ".")]
    if chosen:
        return chosen
    trainer = trainer_origin(key)
    if trainer is not None:
        return [trainer]
    raise UsageError(f"'{key}' is not set by the recipe, a default or TrainingArguments"
                     f"{suggest(key, sorted(known))}; 'fturun explain RECIPE' lists every key")


def recipe_origins(recipe) -> list:
    """Each leaf of the recipe with the file, line and col (or override) that set it."""
    out = []
    for path, value in _leaves(recipe.data, ()):
        file, line, col = recipe.locate(path)
        if file.startswith("override "):
            text = file.removeprefix("override ")
            out.append(Origin(_dotted(path), value, OVERRIDE, f"{text} on the command line"))
        else:
            where = f"{file}:{line}:{col}" if line else file
            out.append(Origin(_dotted(path), value, RECIPE, where))
    return out


def _leaves(value, path: tuple):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def speed_origins(recipe) -> list:
    """The speed defaults fturun would choose on this machine (for rows tokenized in memory)."""
    from ..engine.hardware import Hardware
    from ..engine.speed_defaults import FTURUN, choose_defaults

    data = recipe.data
    choices = choose_defaults(data, dict(data.get("training") or {}), Hardware.detect(),
                              train_columns=("input_ids",))
    return [Origin(c.key, c.value, SPEED, c.reason) for c in choices if c.source == FTURUN]


def component_origins(recipe, registry) -> list:
    """The params a component's schema defaults that the recipe leaves unset."""
    out = []
    for section, (kind, is_list) in COMPONENT_SECTIONS.items():
        refs = recipe.data.get(section)
        if refs is None:
            continue
        items = list(enumerate(refs)) if is_list else [(None, refs)]
        for index, ref in items:
            prefix = section if index is None else f"{section}.{index}"
            out += _defaults(registry, kind, ref, prefix)
    data = recipe.data.get("data") or {}
    for split in DATASET_KEYS:
        ref = data.get(split)
        refs = ref if isinstance(ref, list) else [ref]
        for index, item in enumerate(refs):
            if isinstance(item, dict) and "dataset" in item:  # a mix entry
                item, prefix = item["dataset"], f"data.{split}.{index}.dataset"
            else:
                prefix = f"data.{split}" + (f".{index}" if isinstance(ref, list) else "")
            if item is not None:
                out += _defaults(registry, "dataset", item, prefix)
    return out


def _defaults(registry, kind: str, ref, prefix: str) -> list:
    try:
        name, params = component_ref(ref)
        component = registry.get(kind, name)
    except (KeyError, TypeError, ValueError):  # validation reports it
        return []
    properties = (component.params_schema or {}).get("properties") or {}
    return [Origin(f"{prefix}.params.{param}", spec["default"], COMPONENT,
                   f"{kind} '{name}' params schema")
            for param, spec in properties.items()
            if isinstance(spec, dict) and "default" in spec and param not in (params or {})]


def schema_origins(recipe) -> list:
    """The recipe schema's defaults of top-level keys the recipe leaves unset."""
    return [Origin(key, value, SCHEMA, "the recipe schema")
            for key, value in TOP_DEFAULTS.items() if key not in recipe.data]


def trainer_origin(key: str) -> Origin | None:
    """TrainingArguments' default of ``training.NAME`` in the installed transformers."""
    if not key.startswith("training.") or key.count(".") != 1:
        return None
    from importlib import metadata

    from ..schema import training_schema

    spec = training_schema()["properties"].get(key.split(".", 1)[1])
    if spec is None:
        return None
    version = metadata.version("transformers")
    return Origin(key, spec.get("default"), TRAINER,
                  f"TrainingArguments' default (transformers {version})")
