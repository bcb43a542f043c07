"""The plugin manager: fturun's built-in plugins plus every ``fturun`` entry point, each isolated.

A plugin that fails to import, declares a plugin API range (``FTURUN_API``) that excludes this
fturun's, raises in a hook or registers something invalid (a component or a task record) is
reported with its name and the reason, and none of its components and tasks are registered (all
or nothing, so a recipe never runs against half a plugin); the other plugins keep working.
``FTURUN_DISABLE_PLUGINS=a,b`` skips plugins by name (see ``fturun plugins`` for the names).

The names a disabled or failed plugin would have registered are remembered
(``Registry.unavailable``), so that a recipe naming one is told which plugin it belongs to and
why it is not there: for that, a disabled plugin's module is still imported and its hooks
called, but nothing of it is registered and none of its factories ever runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from .. import hookspecs
from ..core.errors import PluginError
from ..core.suggest import suggest
from .registry import KINDS, PLURALS, Registry
from .tasks import check_task
from .version import API_ATTRIBUTE, API_VERSION, api_range_problem

ENTRY_POINT_GROUP = "fturun"

#: fturun's own components and tasks, registered through the same hooks as any third-party
#: plugin.
BUILTIN_PLUGINS = {f"builtin.{p}": f"fturun.builtin.{p}"
                   for p in (*PLURALS.values(), "chat_datasets", "tasks")}


@dataclass
class PluginInfo:
    """What ``fturun plugins`` reports for one plugin."""

    name: str
    module: str
    version: str
    status: str = "ok"  # ok | failed | disabled
    errors: list = field(default_factory=list)
    components: dict = field(default_factory=dict)
    #: the plugin API range it declares (``FTURUN_API``), or None
    api: str | None = None

    def as_json(self) -> dict:
        """The plugin as a JSON-ready dict."""
        data = {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "status": self.status,
            "api": self.api,
            "components": self.components,
        }
        if self.errors:
            data["errors"] = self.errors
        return data


@dataclass
class LoadedPlugins:
    """The result of loading plugins: the registry plus a report per plugin."""

    registry: Registry
    plugins: list

    @property
    def failures(self) -> list:
        """The plugins that failed to load, with their errors."""
        return [p for p in self.plugins if p.status == "failed"]

    def warn_failures(self, stream=None) -> None:
        """Print one warning per failed plugin, and one per name in ``FTURUN_DISABLE_PLUGINS``
        that is no plugin (to stderr by default)."""
        stream = stream or sys.stderr
        for plugin in self.failures:
            for error in plugin.errors:
                print(f"warning: plugin '{plugin.name}' not loaded: {error}", file=stream)
        names = [p.name for p in self.plugins]
        for name in sorted(disabled_plugin_names() - set(names)):
            print(f"warning: FTURUN_DISABLE_PLUGINS names '{name}', which is no plugin"
                  f"{suggest(name, names)}; plugins: {', '.join(names)}", file=stream)


def disabled_plugin_names() -> set:
    """Names listed in ``FTURUN_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get("FTURUN_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _fturun_version() -> str:
    from .. import __version__

    return __version__


def plugins_report(loaded: LoadedPlugins) -> dict:
    """What ``fturun plugins`` prints: fturun's version, its plugin API version, and every
    plugin (:meth:`PluginInfo.as_json`)."""
    return {"fturun": _fturun_version(), "api_version": API_VERSION,
            "plugins": [p.as_json() for p in loaded.plugins]}


def _candidates(extra_plugins, entry_points: bool = True):
    """Yield ``(name, module_name, version, loader)`` for every plugin to try, built-ins first."""
    version = _fturun_version()
    for name, module_name in BUILTIN_PLUGINS.items():
        yield name, module_name, version, lambda m=module_name: importlib.import_module(m)
    seen = set(BUILTIN_PLUGINS)
    found = metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ()
    for ep in sorted(found, key=lambda e: e.name):
        if ep.name in seen:
            continue  # the same distribution found twice on sys.path
        seen.add(ep.name)
        dist_version = ep.dist.version if ep.dist is not None else "unknown"
        yield ep.name, ep.value, dist_version, ep.load
    for name, obj in (extra_plugins or {}).items():
        yield name, getattr(obj, "__name__", repr(obj)), "unknown", lambda o=obj: o


def load_plugins(extra_plugins: dict | None = None, *, entry_points: bool = True
                 ) -> LoadedPlugins:
    """Load built-ins, entry-point plugins (unless ``entry_points=False``) and
    ``extra_plugins`` (name -> module or object with ``@hookimpl`` functions, for tests) into a
    fresh :class:`Registry`. Returns a :class:`LoadedPlugins`: ``.registry`` holds the
    components, ``.plugins`` a :class:`PluginInfo` per plugin."""
    registry = Registry()
    infos = []
    disabled = disabled_plugin_names()
    for name, module_name, version, loader in _candidates(extra_plugins, entry_points):
        info = PluginInfo(name=name, module=module_name, version=version)
        infos.append(info)
        try:
            plugin = loader()
        except Exception as exc:  # any import-time failure of someone else's code
            if name in disabled:
                info.status = "disabled"
            else:
                info.status = "failed"
                info.errors.append(f"import of '{module_name}' failed: {type(exc).__name__}: "
                                   f"{exc}")
            continue
        declared = getattr(plugin, API_ATTRIBUTE, None)
        info.api = declared if isinstance(declared, str) else None
        if name in disabled:
            info.status = "disabled"
            _remember_names(registry, info, plugin, f"its plugin '{name}' is disabled "
                            f"(FTURUN_DISABLE_PLUGINS); take it out of that list to use it")
            continue
        problem = api_range_problem(declared) if declared is not None else None
        if problem:
            info.status = "failed"
            info.errors.append(f"not loaded: {problem}")
            _remember_names(registry, info, plugin, _failed_note(info))
            continue
        _register_plugin(registry, info, plugin)
    return LoadedPlugins(registry, infos)


def _failed_note(info: PluginInfo) -> str:
    return (f"its plugin '{info.name}' failed to load ({info.errors[0]}); `fturun plugins` "
            "shows every error")


def _plugin_manager(info: PluginInfo, plugin):
    """A pluggy manager holding only ``plugin``; ``PluginError`` when pluggy refuses it."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name=info.name)
        pm.check_pending()
    except Exception as exc:  # pluggy validation: unknown hook, wrong argument names
        raise PluginError(info.name, f"invalid hook implementation: {exc}") from None
    return pm


def _remember_names(registry: Registry, info: PluginInfo, plugin, why: str) -> None:
    """Mark what ``plugin`` would register as unavailable, saying ``why`` (nothing of it is
    registered; a plugin that cannot even be asked is simply skipped)."""
    try:
        pm = _plugin_manager(info, plugin)
    except PluginError:
        return
    _mark_unavailable(registry, *_staged_registrations(pm, []), why)


def _mark_unavailable(registry: Registry, components, tasks, why: str) -> None:
    for kind, name, *_ in components:
        registry.mark_unavailable(kind, name, why)
    for task in tasks:
        registry.mark_unavailable("task", getattr(task, "name", None), why)


def _register_plugin(registry: Registry, info: PluginInfo, plugin) -> None:
    """Register everything ``plugin``'s hooks register, or nothing (``info`` says why)."""
    try:
        pm = _plugin_manager(info, plugin)
    except PluginError as exc:
        info.status = "failed"
        info.errors.append(exc.reason)
        return
    components, tasks = _staged_registrations(pm, info.errors)
    added, added_tasks = [], []
    if not info.errors:
        for kind, name, factory, schema, description in components:
            try:
                added.append(registry.add(kind, name, factory, schema, description, info.name,
                                          trusted=info.name in BUILTIN_PLUGINS))
            except PluginError as exc:
                info.errors.append(exc.reason)
        for task in tasks:
            try:
                added_tasks.append(registry.add_task(check_task(task, info.name), info.name))
            except PluginError as exc:
                info.errors.append(exc.reason)
    if info.errors:
        info.status = "failed"
        for component in added:  # all or nothing
            del registry.components[component.kind][component.name]
        for task in added_tasks:
            registry.remove_task(task.name)
        _mark_unavailable(registry, components, tasks, _failed_note(info))
        return
    for component in added:
        info.components.setdefault(component.kind, []).append(component.name)
    for task in added_tasks:
        info.components.setdefault("task", []).append(task.name)


class _Register:
    """The ``register`` a component hook gets (:class:`fturun.plugin.contracts.Register`): collects
    ``(kind, name, factory, params_schema, description)``; the registry checks them after."""

    def __init__(self, kind: str, into: list):
        self.kind, self.into = kind, into

    def __call__(self, name, factory, params_schema, description) -> None:
        self.into.append((self.kind, name, factory, params_schema, description))


def _staged_registrations(pm, errors: list):
    """``(components, tasks)`` the plugin's hooks register; a hook that raises stops there,
    with the error appended to ``errors``."""
    components, tasks = [], []
    hooks = [(f"fturun_register_{PLURALS[kind]}", _Register(kind, components)) for kind in KINDS]
    for hook_name, register in [*hooks, ("fturun_register_tasks", tasks.append)]:
        try:
            getattr(pm.hook, hook_name)(register=register)
        except Exception as exc:
            errors.append(f"hook {hook_name} raised {type(exc).__name__}: {exc}")
            break
    return components, tasks


_DEFAULT = None


def default_plugins() -> LoadedPlugins:
    """The plugins of this process, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT
