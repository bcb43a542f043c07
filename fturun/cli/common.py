"""What several commands share: the plugins (failures warned about) and a validated recipe."""

from __future__ import annotations

from ..core.errors import RecipeError


def load_plugins_warned():
    """The default plugins; a plugin that failed to load, or a name in
    ``FTURUN_DISABLE_PLUGINS`` that is no plugin, is reported on stderr (by rank 0 only: the
    other processes of a launch would repeat it)."""
    from ..core.dist import is_main_process
    from ..plugin.manager import default_plugins

    loaded = default_plugins()
    if is_main_process():
        loaded.warn_failures()
    return loaded


def load_valid_recipe(path, overrides, loaded=None, check_hub=True):
    """Read and validate a recipe; raise :class:`RecipeError` with every problem. A recipe
    that needs the Hub where it cannot be used fails here (``check_hub``), before anything
    heavy is loaded (:func:`~fturun.engine.hub.check_recipe_hub_access`)."""
    from ..engine.hub import check_recipe_hub_access
    from ..recipe.load import load_recipe
    from ..schema import validate_recipe

    loaded = loaded or load_plugins_warned()
    recipe = load_recipe(path, overrides)
    from ..core.redaction import remember_recipe_secrets

    remember_recipe_secrets(recipe.data)
    problems = validate_recipe(recipe, loaded.registry)
    if problems:
        raise RecipeError(problems)
    if check_hub:
        check_recipe_hub_access(recipe.data, recipe.base_dir)
    return recipe, loaded


def whole_number(least: int, most: int | None = None):
    """An argparse ``type``: a whole number from ``least`` (to ``most``), else a usage error
    naming the range."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least or (most is not None and value > most):
            span = f"from {least} to {most}" if most is not None else f"of {least} or more"
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number {span}")
        return value

    parse.__name__ = "number"
    return parse
