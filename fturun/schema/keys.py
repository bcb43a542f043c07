"""Dotted recipe keys (``adapter.params.r``, as search spaces and overrides write them): whether one
names a settable key of a given recipe under the composed schema."""

from __future__ import annotations

from ..core.suggest import suggest


def check_recipe_key(schema: dict, data: dict, dotted: str) -> str | None:
    """None when ``dotted`` (e.g. ``adapter.params.r``) names a settable key of this recipe,
    else a message with a suggestion. Component params are looked up for the component the
    recipe names at that place."""
    return recipe_key_schema(schema, data, dotted)[1]


def recipe_key_schema(schema: dict, data: dict, dotted: str) -> tuple:
    """``(the schema of the value at dotted key, None)`` when ``dotted`` names a settable key of
    this recipe, else ``(None, a message with a suggestion)``."""
    node = {"$ref": "#"}
    value = data
    walked = []
    for part in dotted.split("."):
        node = _deref(schema, node)
        if "else" in node and "if" in node and node.get("type") == ["string", "object"]:
            node = node["else"]  # a component reference, written as an object
            if isinstance(value, str):
                value = {"name": value}
        where = ".".join(walked) or "the recipe"
        if node.get("type") == "array" or "items" in node:
            if not part.isdigit():
                return None, f"'{dotted}': {where} is a list; use an index, e.g. {where}.0"
            node = node.get("items", {})
            value = value[int(part)] if isinstance(value, list) and int(part) < len(value) \
                else None
        else:
            props = dict(node.get("properties", {}))
            if part == "params" and isinstance(value, dict) and "allOf" in node:
                params = _params_schema(node, value.get("name"))
                if params is None:
                    return None, f"'{dotted}': {where} names no component with params"
                props["params"] = params
            if part not in props:
                if isinstance(node.get("additionalProperties"), dict):
                    node = node["additionalProperties"]
                    value = value.get(part) if isinstance(value, dict) else None
                    walked.append(part)
                    continue
                return None, (f"'{dotted}' is not a recipe key: {where} has no '{part}'"
                              f"{suggest(part, props)}")
            node = props[part]
            value = value.get(part) if isinstance(value, dict) else None
        walked.append(part)
    return _deref(schema, node), None


def _params_schema(reference: dict, name):
    """The params schema of component ``name`` in a component reference's object form."""
    for branch in reference["allOf"]:
        if branch["if"]["properties"]["name"].get("const") == name:
            return branch["then"]["properties"]["params"]
    return None


def _deref(schema, node):
    """Follow ``$ref`` (``#/...`` only) until ``node`` is a schema of its own."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        node = schema
        for piece in ref.lstrip("#/").split("/"):
            if piece:
                node = node[piece]
    return node
