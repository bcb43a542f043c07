"""Questions about the columns of a ``datasets.Dataset``, shared by the data pipeline and the
tasks' preprocessing (``datasets`` is imported inside)."""

from __future__ import annotations

STRING_DTYPES = ("string", "large_string")


def is_list_column(ds, column: str) -> bool:
    """Whether ``column`` holds a list per row (the words or tags of a token-classification
    row)."""
    from datasets import LargeList, List

    return isinstance(ds.features[column], (List, LargeList, list))


def column_dtype(ds, column: str) -> str:
    """The dtype of a plain column (``"string"``, ``"int64"``), else its feature's type name."""
    feature = ds.features[column]
    return getattr(feature, "dtype", type(feature).__name__)


def is_integer_feature(feature) -> bool:
    """Whether a feature holds integers (label ids rather than label names)."""
    dtype = getattr(feature, "dtype", "")
    return isinstance(dtype, str) and dtype.startswith(("int", "uint"))


def as_string_column(ds, column: str):
    """``ds`` with ``column`` cast to strings (unchanged when it holds strings already)."""
    from datasets import Value

    if column_dtype(ds, column) in STRING_DTYPES:
        return ds
    return ds.cast_column(column, Value("string"))
