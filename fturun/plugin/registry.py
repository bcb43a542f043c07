"""Components by kind (the names a recipe may use, their factories, params schemas and
descriptions) and the task records by name."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import PluginError
from ..core.suggest import suggest
from ..recipe.refs import component_name, component_ref

#: what other modules import from here (the reference parser and "did you mean" live below)
__all__ = ["KINDS", "PLURALS", "NAME_PATTERN", "Component", "Registry", "closed_schema",
           "component_name", "component_ref", "suggest", "with_defaults"]

#: Component kinds, in the order the runner builds them. Each kind has one registration hook,
#: ``fturun_register_<plural>`` (see :mod:`fturun.hookspecs`).
KINDS = (
    "dataset",
    "model",
    "adapter",
    "collator",
    "loss",
    "metric",
    "callback",
    "optimizer",
    "scheduler",
    "reward",
)

#: The plural of each kind: the hook is ``fturun_register_<plural>``, the built-in module
#: ``fturun.builtin.<plural>``.
PLURALS = {kind: kind + ("es" if kind.endswith("s") else "s") for kind in KINDS}

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Component:
    """A registered component: what a recipe names and how fturun builds it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params_schema: dict
    description: str
    plugin: str

    def params_for(self, params: dict | None) -> dict:
        """``params`` with the schema's defaults filled in (a copy): what the factory gets."""
        return with_defaults(self.params_schema, dict(params or {}))

    def build(self, params: dict | None, context):
        """Call the factory as the contract says: ``factory(params with defaults, context)``."""
        return self.factory(self.params_for(params), context)


def with_defaults(schema: dict, value: dict) -> dict:
    """``value`` with the ``default`` of each of the schema's ``properties`` it leaves out, and
    likewise inside the nested objects it has (``anyOf`` / ``oneOf`` branches are not
    entered: which branch applies is the value's business)."""
    import copy

    if not isinstance(schema, dict) or not isinstance(value, dict):
        return value
    filled = dict(value)
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if key not in filled and "default" in prop:
            filled[key] = copy.deepcopy(prop["default"])
        elif isinstance(filled.get(key), dict):
            filled[key] = with_defaults(prop, filled[key])
    return filled


@dataclass
class Registry:
    """All components by kind, filled by the plugin manager through the registration hooks."""

    components: dict = field(default_factory=lambda: {kind: {} for kind in KINDS})
    #: task name -> :class:`fturun.plugin.tasks.Task` (``fturun_register_tasks``)
    tasks: dict = field(default_factory=dict)
    #: task name -> the plugin that registered it
    task_plugins: dict = field(default_factory=dict)
    #: kind (or ``"task"``) -> name -> why it is not registered: the names a disabled or failed
    #: plugin would have registered, e.g. "its plugin 'x' is disabled (FTURUN_DISABLE_PLUGINS)"
    unavailable: dict = field(default_factory=dict)

    def mark_unavailable(self, kind: str, name, why: str) -> None:
        """Remember that ``name`` is not registered because of its plugin (for the messages)."""
        if isinstance(name, str):
            self.unavailable.setdefault(kind, {}).setdefault(name, why)

    def why_unavailable(self, kind: str, name) -> str | None:
        """Why ``name`` is not a registered ``kind`` (``"task"`` for a task) when a disabled or
        failed plugin has it; None when it is registered or no plugin is known to have it."""
        registered = self.tasks if kind == "task" else self.components.get(kind, {})
        if name in registered:
            return None
        return self.unavailable.get(kind, {}).get(name)

    def add(self, kind: str, name, factory, params_schema, description, plugin: str,
            trusted: bool = False) -> Component:
        """Check and add one component; raise :class:`PluginError` saying what is wrong.
        ``trusted`` (fturun's own built-ins): the params schema is not checked against JSON
        Schema's meta-schema here, which costs ~6 ms a schema on every command; the test suite
        checks the built-ins' schemas instead."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise PluginError(
                plugin,
                f"{kind} name {name!r} is invalid: use lowercase letters, digits, '_' and '-'",
            )
        if not callable(factory):
            raise PluginError(plugin, f"{kind} '{name}': factory {factory!r} is not callable")
        if not isinstance(description, str) or not description.strip():
            raise PluginError(plugin, f"{kind} '{name}': a one-line description is required")
        params_schema = _checked_schema(kind, name, params_schema, plugin, trusted)
        existing = self.components[kind].get(name)
        if existing is not None:
            raise PluginError(
                plugin,
                f"{kind} '{name}' is already registered by plugin '{existing.plugin}'; "
                f"plugin '{plugin}' cannot register it again (rename one of them, or disable "
                f"a plugin with FTURUN_DISABLE_PLUGINS)",
            )
        component = Component(kind, name, factory, params_schema, description.strip(), plugin)
        self.components[kind][name] = component
        return component

    def add_task(self, task, plugin: str):
        """Add one checked task record (:func:`fturun.plugin.tasks.check_task`); raise
        :class:`PluginError` when its name is taken."""
        existing = self.task_plugins.get(task.name)
        if existing is not None:
            raise PluginError(
                plugin,
                f"task '{task.name}' is already registered by plugin '{existing}'; plugin "
                f"'{plugin}' cannot register it again (rename one of them, or disable a plugin "
                f"with FTURUN_DISABLE_PLUGINS)",
            )
        self.tasks[task.name] = task
        self.task_plugins[task.name] = plugin
        return task

    def remove_task(self, name: str) -> None:
        """Take a task out again (a plugin that failed later: all or nothing)."""
        self.tasks.pop(name, None)
        self.task_plugins.pop(name, None)

    def names(self, kind: str) -> list:
        """Sorted names of the components of one kind."""
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        """Look up a component; raise ``KeyError`` with a "did you mean" message when unknown."""
        try:
            return self.components[kind][name]
        except KeyError:
            why = self.why_unavailable(kind, name)
            if why:
                raise KeyError(f"'{name}' is not a registered {kind}: {why}") from None
            raise KeyError(
                f"'{name}' is not a registered {kind}{suggest(name, self.components[kind])}; "
                f"registered: {', '.join(self.names(kind)) or 'none'}"
            ) from None


def _checked_schema(kind, name, schema, plugin, trusted=False):
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise PluginError(plugin, f"{kind} '{name}': params schema must be a JSON object")
    try:
        if not trusted:
            Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise PluginError(
            plugin, f"{kind} '{name}': invalid params schema: {exc.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise PluginError(plugin, f"{kind} '{name}': params schema must describe an object "
                                  f"(\"type\": \"object\"), not {schema['type']!r}")
    return closed_schema(schema)


#: keywords that take part in deciding which properties a schema evaluates
_COMPOSITION = ("allOf", "anyOf", "oneOf", "if", "$ref", "dependentSchemas")


def closed_schema(schema: dict) -> dict:
    """A params schema that refuses keys it does not name, unless it says otherwise: adds
    ``"additionalProperties": false`` (``"unevaluatedProperties": false`` when properties
    come from ``allOf``/``anyOf``/``oneOf``/``if``/``$ref``), with or without ``properties``
    (``{"type": "object"}`` then means: no params). Write ``"additionalProperties": true`` to
    accept any key."""
    schema = {"type": "object", **schema}
    if "additionalProperties" in schema or "unevaluatedProperties" in schema:
        return schema
    if any(key in schema for key in _COMPOSITION):
        schema["unevaluatedProperties"] = False
    else:
        schema["additionalProperties"] = False
    return schema
