"""Step 1: the rows of a dataset source, through its registered factory."""

from __future__ import annotations

from ..core.errors import RecipeRuntimeError, environment_fault
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
    try:
        ds = component.build(params, context)  # the factory, with the schema's defaults
    except (OSError, UnicodeDecodeError) as exc:
        raise read_error(exc, split, name) from None
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


def read_error(exc: BaseException, split: str, name: str) -> Exception:
    """What a dataset factory's unhandled read failure becomes: a machine's fault (a full disk,
    a permission: :func:`~fturun.core.errors.environment_fault`) as it is; any other OS or
    decoding error (a symlink loop, a file that is not text in the encoding) as a
    :class:`RecipeRuntimeError` naming the file."""
    fault = environment_fault(exc)
    if fault is not None:
        return fault
    if isinstance(exc, UnicodeDecodeError):
        return RecipeRuntimeError(
            f"data.{split}: dataset '{name}': a file is not text in its encoding "
            f"({exc.encoding}: {exc.reason} at byte {exc.start}); set params.encoding")
    where = exc.filename if getattr(exc, "filename", None) else "a data file"
    return RecipeRuntimeError(f"data.{split}: dataset '{name}': cannot read {where}: "
                              f"{exc.strerror or exc} (a broken or looping symbolic link? "
                              "fix or remove it, or point the dataset elsewhere)")
