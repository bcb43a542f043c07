"""The plugin API's version, and the range of it a plugin declares.

**Versioning** (semantic, of the plugin API only: :mod:`fturun.api`, :mod:`fturun.hookspecs`,
:mod:`fturun.plugin.contracts`, the :class:`~fturun.plugin.context.BuildContext` fields and the
:class:`~fturun.plugin.tasks.Task` record): :data:`API_VERSION` is ``MAJOR.MINOR``. A minor release
adds (a hook, a context field, an optional record field, an optional key a factory may return)
and keeps every plugin written for an earlier minor working; a major release may remove or
change something a plugin relies on. A plugin module declares the range it works with as
``FTURUN_API = ">=1.0,<2"`` (PEP 440 specifiers; ``">=1.2,<2"`` when it needs something 1.2
added); fturun refuses a plugin whose range excludes :data:`API_VERSION`, naming both. Without
``FTURUN_API`` a plugin is loaded by any fturun.
"""

from __future__ import annotations

#: the version of the plugin API (:mod:`fturun.api`, :mod:`fturun.hookspecs`, the contracts)
API_VERSION = "1.4"

#: what each minor version added, for plugin authors choosing their range
API_CHANGES = {
    "1.1": "Task: trainer may be a callable returning (Trainer class, TrainingArguments class); "
           "training_settings, trainer_metrics and columns; api.arguments_schema",
    "1.2": "api.installed_schema: a settings schema generated from the installed library "
           "(committed for the locked version, cached per other version); "
           "api.installed_versions",
    "1.3": "the reward kind (fturun_register_rewards, a recipe's weighted 'rewards'; "
           "RewardFactory / RewardFunction); Task: takes_rewards and keep_columns",
    "1.4": "BuildContext.resolve_model: the folder of a trained model a component names (a "
           "folder, a run id, models:/NAME@ALIAS, models:/NAME/VERSION, m-...)",
}

#: the module (or plugin object) attribute a plugin declares its API range with
API_ATTRIBUTE = "FTURUN_API"


def api_range_problem(declared) -> str | None:
    """Why a plugin declaring ``FTURUN_API = declared`` cannot load here, or None when the range
    includes :data:`API_VERSION`."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not isinstance(declared, str):
        return (f"{API_ATTRIBUTE} = {declared!r} is not a version range: write a string such "
                f"as \">=1.0,<2\"")
    try:
        spec = SpecifierSet(declared)
    except InvalidSpecifier:
        return (f"{API_ATTRIBUTE} = {declared!r} is not a version range: write PEP 440 "
                f"specifiers such as \">=1.0,<2\"")
    if spec.contains(API_VERSION, prereleases=True):
        return None
    major = API_VERSION.split(".")[0]
    return (f"it needs fturun plugin API {declared}, and this fturun provides API "
            f"{API_VERSION}: install a version of the plugin made for API {major}.x, or a "
            f"fturun whose plugin API is in {declared}")
