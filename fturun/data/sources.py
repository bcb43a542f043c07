"""Step 1: the rows of a dataset source, through its registered factory."""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError
from ..recipe.refs import component_ref


def load_source(ref, split: str, registry, context):
    """Rows of one dataset source (``data.train``, ``data.eval``, ``data.test``) through its
    registered factory: a ``datasets.Dataset`` with at least one row."""
    from datasets import Dataset

    name, params = component_ref(ref)
    try:
        component = registry.get("dataset", name)
    except KeyError as exc:
        raise RecipeRuntimeError(f"data.{split}: {exc.args[0]}") from None
    ds = component.build(params, context)  # the factory, with the schema's defaults
    if not isinstance(ds, Dataset):
        raise RecipeRuntimeError(
            f"data.{split}: dataset '{name}' returned a {type(ds).__name__}, not a "
            "datasets.Dataset (a DatasetDict needs params.split; streaming datasets are not "
            "supported)")
    if len(ds) == 0:
        where = params.get("path") if isinstance(params, dict) else None
        raise RecipeRuntimeError(
            f"data.{split}: dataset '{name}'{f' ({where})' if where else ''} has no rows: "
            f"point data.{split} at data that holds the examples")
    return ds
