"""Steps 1-2 for a train source made of several: weighted mixing.

``data.train`` may be a list of sources, each ``{"dataset": <a dataset reference>, "weight":
w, "max_rows": n?}``. Each source is loaded and put through the columns step on its own (so
their rows have the same standard columns), cut to ``max_rows`` (a seeded shuffle, then the
first rows), then the sources are combined with ``datasets.interleave_datasets``: each row of
the mix is drawn from source *i* with probability ``weight_i / sum(weights)``, seeded with the
recipe's ``seed`` (the same recipe gives the same mix), until ``data.stopping_strategy``:

- ``first_exhausted`` (the default): the mix ends when one source has no rows left, so no row
  is repeated and the realised shares follow the weights;
- ``all_exhausted``: the mix ends once every source has been used whole; the sources that run
  out first start again (their rows repeat), the shares still follow the weights.

The result is an ordinary ``datasets.Dataset``; the eval/test splits and ``max_train_samples``
are taken from it afterwards like from any train source. What was realised (the rows each
source gave) is kept in ``context.train_mix`` (a :class:`Mix`): the plan prints it and each
source is logged as its own MLflow dataset input (:func:`dataset_inputs`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import RecipeRuntimeError
from .sources import load_source
from .splits import SPLITS, subsample

STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted")
DEFAULT_STOPPING_STRATEGY = "first_exhausted"
SOURCE_COLUMN = "__fturun_mix_source"  # which source a row came from, while mixing


@dataclass
class MixedSource:
    """One source of a mix and what it gave: ``available`` rows (after the columns step and
    ``max_rows``), ``taken`` rows in the mix (more than available under ``all_exhausted``),
    and ``rows``: the ``datasets.Dataset`` of the rows taken (its MLflow input)."""

    index: int
    ref: Any
    weight: float
    share: float
    available: int
    taken: int = 0
    rows: Any = None

    @property
    def label(self) -> str:
        """``data.train[i]``: where the recipe names this source."""
        return f"data.train[{self.index}]"


@dataclass
class Mix:
    """The realised mix of ``data.train``: its sources, stopping strategy, seed and size."""

    stopping_strategy: str
    seed: int
    sources: list = field(default_factory=list)
    rows: int = 0

    def describe(self) -> list:
        """Lines for a person: the mix, then one per source (planned and realised share)."""
        lines = [f"{len(self.sources)} sources mixed by weight, stopping strategy "
                 f"'{self.stopping_strategy}' (seed {self.seed}): {self.rows:,} rows before the "
                 "eval/test splits"]
        for source in self.sources:
            realised = source.taken / self.rows if self.rows else 0.0
            lines.append(f"{source.label} {describe_ref(source.ref)}: {source.taken:,} rows "
                         f"({100 * realised:.1f}%; weight {source.weight:g} = "
                         f"{100 * source.share:.1f}%) of {source.available:,} available")
        return lines


def is_mix(ref) -> bool:
    """Whether a ``data.train`` value is a list of weighted sources."""
    return isinstance(ref, list)


def describe_ref(ref) -> str:
    """``name`` or ``name (path)`` of a dataset reference, for a person."""
    if isinstance(ref, str):
        return ref
    params = ref.get("params") if isinstance(ref.get("params"), dict) else {}
    path = params.get("path")
    if isinstance(path, list) and len(path) > 1:
        path = f"{path[0]} and {len(path) - 1} more"
    elif isinstance(path, list) and path:
        path = path[0]
    return f"{ref.get('name')} ({path})" if isinstance(path, str) else str(ref.get("name"))


def load_sources(recipe_data: dict, registry, context, select) -> dict:
    """``{split: Dataset}`` of the recipe's sources after the columns step ``select(ds, split)``
    (``split`` names the source in messages: ``train``, ``eval``, ``train[1]``); a list of
    ``data.train`` sources is mixed (:func:`mix_sources`) and ``context.train_mix`` set (None
    for a single source)."""
    context.train_mix = None
    sources = {}
    for split in SPLITS:
        ref = recipe_data.get(split)
        if ref is None:
            continue
        if split == "train" and is_mix(ref):
            sources[split] = mix_sources(ref, recipe_data, registry, context, select)
        else:
            sources[split] = select(load_source(ref, split, registry, context), split)
    return sources


def mix_sources(entries: list, recipe_data: dict, registry, context, select):
    """One dataset of the weighted ``entries`` of ``data.train`` (see the module docstring);
    sets ``context.train_mix``. The weights (above 0) and the list (not empty) are the
    schema's to check (``$.data.train[1].weight``); sources whose columns cannot be aligned are
    a :class:`RecipeRuntimeError` naming the source."""
    from datasets import interleave_datasets

    stopping = recipe_data.get("stopping_strategy", DEFAULT_STOPPING_STRATEGY)
    # over the largest weight first: the sum of weights near the float maximum stays finite
    top = max(float(entry["weight"]) for entry in entries)
    total = sum(float(entry["weight"]) / top for entry in entries)
    mix = Mix(stopping_strategy=stopping, seed=context.seed)
    parts = []
    for index, entry in enumerate(entries):
        label = f"train[{index}]"
        ds = select(load_source(entry["dataset"], label, registry, context), label)
        if entry.get("max_rows") is not None:
            ds = subsample(ds, int(entry["max_rows"]), context.seed)
        mix.sources.append(MixedSource(index, entry["dataset"], float(entry["weight"]),
                                       float(entry["weight"]) / top / total, len(ds)))
        parts.append(ds)
    parts = _aligned(parts)
    tagged = [ds.add_column(SOURCE_COLUMN, [i] * len(ds)) for i, ds in enumerate(parts)]
    mixed = interleave_datasets(tagged, probabilities=[s.share for s in mix.sources],
                                seed=context.seed, stopping_strategy=stopping)
    counts = Counter(mixed[SOURCE_COLUMN])
    mixed = mixed.remove_columns(SOURCE_COLUMN)
    mix.rows = len(mixed)
    for source, ds in zip(mix.sources, parts):
        source.taken = counts.get(source.index, 0)
        # interleave_datasets takes each source's rows in order (cycling under all_exhausted)
        source.rows = ds.select([i % len(ds) for i in range(source.taken)])
        if source.taken == 0:
            context.log(f"warning: {source.label} gave no rows to the mix: its weight "
                        f"{source.weight:g} is {100 * source.share:.2f}% of the total; raise it "
                        "or remove the source")
    context.train_mix = mix
    for line in mix.describe():
        context.log(f"data.train mix: {line}")
    return mixed


def _aligned(parts: list) -> list:
    """The sources with the columns and features of the first (e.g. a ``large_string`` column
    cast to ``string``); a :class:`RecipeRuntimeError` naming the source whose columns differ."""
    first = parts[0]
    aligned = [first]
    for index, ds in enumerate(parts[1:], start=1):
        if set(ds.column_names) != set(first.column_names):
            raise RecipeRuntimeError(
                f"data.train[{index}]: its columns after data.columns ({', '.join(ds.column_names)}"
                f") differ from data.train[0]'s ({', '.join(first.column_names)}); mixed "
                "sources need the same columns: give every source the columns data.columns names")
        if ds.features != first.features:
            try:
                ds = ds.cast(first.features)
            except (ValueError, TypeError) as exc:
                raise RecipeRuntimeError(
                    f"data.train[{index}]: its columns cannot take data.train[0]'s types "
                    f"({exc}); mixed sources need columns of the same kind") from None
        aligned.append(ds)
    return aligned


def dataset_inputs(recipe_data: dict, splits: dict, mix: Mix | None) -> list:
    """``[(name, ref, ds, context)]``: the run's MLflow dataset inputs. One per split (``ref``
    the recipe's reference of its source; a split carved out of the train source has the train
    source's), and with a mix one more per source: ``train[i]``, its reference and the rows it
    gave, in the ``train`` context. A split of a mix has the reference ``{"mix": [...],
    "stopping_strategy": ...}``."""
    inputs = []
    for split, ds in splits.items():
        ref = recipe_data.get(split) or recipe_data["train"]
        if is_mix(ref):
            ref = {"mix": ref, "stopping_strategy": mix.stopping_strategy if mix else
                   recipe_data.get("stopping_strategy", DEFAULT_STOPPING_STRATEGY)}
        inputs.append((split, ref, ds, split))
    for source in (mix.sources if mix else []):
        inputs.append((f"train[{source.index}]", source.ref, source.rows, "train"))
    return inputs
