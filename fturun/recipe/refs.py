"""The one component-reference parser: ``"name"`` or ``{"name": ..., "params": {...}}``, as a
recipe writes a component."""

from __future__ import annotations


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
