"""recipe (layer 1): the recipe language: JSON with line and column, `extends`, KEY=VALUE
overrides, paths relative to the recipe, and the one component-reference parser."""
