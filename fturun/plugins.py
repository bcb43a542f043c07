"""The plugin manager: fturun's built-in plugins plus every ``fturun`` entry point, each isolated.

A plugin that fails to import, raises in a hook or registers something invalid (a component or a
task record) is reported with its name and the reason, and none of its components and tasks are
registered (all or nothing, so a recipe never runs against half a plugin); the other plugins keep
working. ``FTURUN_DISABLE_PLUGINS=a,b`` skips plugins by name (see ``fturun plugins`` for the
names).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import KINDS, PLURALS, Registry
from .tasks import check_task

ENTRY_POINT_GROUP = "fturun"

#: fturun's own components and tasks, registered through the same hooks as any third-party
#: plugin.
BUILTIN_PLUGINS = {f"builtin.{p}": f"fturun.builtin.{p}" for p in (*PLURALS.values(), "tasks")}


@dataclass
class PluginInfo:
    """What ``fturun plugins`` reports for one plugin."""

    name: str
    module: str
    version: str
    status: str = "ok"  # ok | failed | disabled
    errors: list = field(default_factory=list)
    components: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        """The plugin as a JSON-ready dict."""
        data = {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "status": self.status,
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
        """Print one warning per failed plugin (to stderr by default)."""
        stream = stream or sys.stderr
        for plugin in self.failures:
            for error in plugin.errors:
                print(f"warning: plugin '{plugin.name}' not loaded: {error}", file=stream)


def disabled_plugin_names() -> set:
    """Names listed in ``FTURUN_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get("FTURUN_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _fturun_version() -> str:
    from . import __version__

    return __version__


def _candidates(extra_plugins):
    """Yield ``(name, module_name, version, loader)`` for every plugin to try, built-ins first."""
    version = _fturun_version()
    for name, module_name in BUILTIN_PLUGINS.items():
        yield name, module_name, version, lambda m=module_name: importlib.import_module(m)
    seen = set(BUILTIN_PLUGINS)
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:
            continue  # the same distribution found twice on sys.path
        seen.add(ep.name)
        dist_version = ep.dist.version if ep.dist is not None else "unknown"
        yield ep.name, ep.value, dist_version, ep.load
    for name, obj in (extra_plugins or {}).items():
        yield name, getattr(obj, "__name__", repr(obj)), "unknown", lambda o=obj: o


def load_plugins(extra_plugins: dict | None = None) -> LoadedPlugins:
    """Load built-ins, entry-point plugins and ``extra_plugins`` (name -> module or object, for
    tests) into a fresh :class:`Registry`."""
    registry = Registry()
    infos = []
    disabled = disabled_plugin_names()
    for name, module_name, version, loader in _candidates(extra_plugins):
        info = PluginInfo(name=name, module=module_name, version=version)
        infos.append(info)
        if name in disabled:
            info.status = "disabled"
            continue
        try:
            plugin = loader()
        except Exception as exc:  # any import-time failure of someone else's code
            info.status = "failed"
            info.errors.append(f"import of '{module_name}' failed: {type(exc).__name__}: {exc}")
            continue
        _register_plugin(registry, info, plugin)
    return LoadedPlugins(registry, infos)


def _register_plugin(registry: Registry, info: PluginInfo, plugin) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name=info.name)
        pm.check_pending()
    except Exception as exc:  # pluggy validation: unknown hook, wrong argument names
        info.status = "failed"
        info.errors.append(f"invalid hook implementation: {exc}")
        return
    staged = _staged_registrations(pm, info)
    if staged is None:
        return
    components, tasks = staged
    added, added_tasks = [], []
    for kind, name, factory, schema, description in components:
        try:
            added.append(registry.add(kind, name, factory, schema, description, info.name))
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
        return
    for component in added:
        info.components.setdefault(component.kind, []).append(component.name)
    for task in added_tasks:
        info.components.setdefault("task", []).append(task.name)


def _staged_registrations(pm, info: PluginInfo):
    """``(components, tasks)`` the plugin's hooks register, or None when a hook raised."""
    components, tasks = [], []
    hooks = [(f"fturun_register_{PLURALS[kind]}", kind) for kind in KINDS]
    for hook_name, kind in [*hooks, ("fturun_register_tasks", None)]:
        hook = getattr(pm.hook, hook_name)

        def register(name, factory, params_schema=None, description="", _kind=kind):
            components.append((_kind, name, factory, params_schema, description))

        try:
            hook(register=register if kind is not None else tasks.append)
        except Exception as exc:
            info.status = "failed"
            info.errors.append(f"hook {hook_name} raised {type(exc).__name__}: {exc}")
            return None
    return components, tasks


_DEFAULT = None


def default_plugins() -> LoadedPlugins:
    """The plugins of this process, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT
