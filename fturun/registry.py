"""Components by kind (the names a recipe may use, their factories, params schemas and
descriptions) and the task records by name."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import PluginError

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


def suggest(word: str, candidates) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def component_name(ref) -> str | None:
    """The name in a component reference (``"name"`` or ``{"name": ..., "params": {...}}``), or
    ``None`` for anything else: validation reports malformed references, rules skip them."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return ref["name"]
    return None


def component_ref(ref) -> tuple[str, dict]:
    """``(name, params)`` of a component reference: ``"name"`` or ``{"name", "params"}``; the
    params are a new dict (``{}`` when left out). Raises ``ValueError`` for anything else, which a
    validated recipe never holds."""
    name = component_name(ref)
    if name is None:
        raise ValueError(f"not a component reference: {ref!r} (write \"name\" or "
                         f"{{\"name\": ..., \"params\": {{...}}}})")
    params = ref.get("params") if isinstance(ref, dict) else None
    return name, dict(params or {})


@dataclass
class Registry:
    """All components by kind, filled by the plugin manager through the registration hooks."""

    components: dict = field(default_factory=lambda: {kind: {} for kind in KINDS})
    #: task name -> :class:`fturun.tasks.Task` (``fturun_register_tasks``)
    tasks: dict = field(default_factory=dict)
    #: task name -> the plugin that registered it
    task_plugins: dict = field(default_factory=dict)

    def add(self, kind: str, name, factory, params_schema, description, plugin: str) -> Component:
        """Check and add one component; raise :class:`PluginError` saying what is wrong."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise PluginError(
                plugin,
                f"{kind} name {name!r} is invalid: use lowercase letters, digits, '_' and '-'",
            )
        if not callable(factory):
            raise PluginError(plugin, f"{kind} '{name}': factory {factory!r} is not callable")
        if not isinstance(description, str) or not description.strip():
            raise PluginError(plugin, f"{kind} '{name}': a one-line description is required")
        params_schema = _checked_schema(kind, name, params_schema, plugin)
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
        """Add one checked task record (:func:`fturun.tasks.check_task`); raise
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
            raise KeyError(
                f"'{name}' is not a registered {kind}{suggest(name, self.components[kind])}; "
                f"registered: {', '.join(self.names(kind)) or 'none'}"
            ) from None


def _checked_schema(kind, name, schema, plugin):
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise PluginError(plugin, f"{kind} '{name}': params schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise PluginError(
            plugin, f"{kind} '{name}': invalid params schema: {exc.message}"
        ) from None
    schema = dict(schema)
    schema.setdefault("type", "object")
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
    return schema
