"""What several commands share: the plugins (failures warned about) and a validated recipe."""

from __future__ import annotations

from ..errors import RecipeError


def load_plugins_warned():
    """The default plugins; a plugin that failed to load is reported on stderr."""
    from ..plugins import default_plugins

    loaded = default_plugins()
    loaded.warn_failures()
    return loaded


def load_valid_recipe(path, overrides, loaded=None):
    """Read and validate a recipe; raise :class:`RecipeError` with every problem."""
    from ..recipe import load_recipe
    from ..schema import validate_recipe

    loaded = loaded or load_plugins_warned()
    recipe = load_recipe(path, overrides)
    from ..redaction import remember_recipe_secrets

    remember_recipe_secrets(recipe.data)
    problems = validate_recipe(recipe, loaded.registry)
    if problems:
        raise RecipeError(problems)
    return recipe, loaded
