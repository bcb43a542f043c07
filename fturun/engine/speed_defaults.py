"""Defaults fturun chooses for speed where the recipe leaves a key unset, each stated with its
reason, recorded (``engine.json``, MLflow tags ``fturun.default.*``) and switched off by setting
the key in the recipe:

- ``training.train_sampling_strategy = "group_by_length"`` when padding is dynamic: batches of
  rows of similar length carry less padding (the Trainer's length groups, drawn in a shuffled
  order, :class:`ShuffledLengthGroups`; lengths read from the Arrow column in milliseconds
  instead of a pass over every row, :func:`install_length_sampler`);
- on CUDA: ``bf16`` where the GPU has bfloat16, else ``fp16``; ``tf32`` on Ampere or newer;
  pinned memory; ``dataloader_num_workers`` sized to the CPUs each process has, kept alive
  across epochs (``dataloader_persistent_workers``); on CPU: no pinning, no loader workers;
- attention: transformers already picks SDPA where the model supports it (and eager where it
  does not, which forcing ``sdpa`` would turn into an error), so fturun states the
  implementation the loaded model uses rather than setting one.

:func:`choose_defaults` is the decision alone: a recipe, a device description
(:class:`~fturun.engine.hardware.Hardware`, CPUs) and what the loaded data and model are; tests
give it
described devices. :func:`apply_defaults` sets the chosen keys that are still unset.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from ..core.dist import int_env
from ..recipe.refs import component_ref
from .hardware import Hardware

#: source of a choice: fturun chose it / the recipe set the key (fturun's default off) /
#: the library chose it and fturun states it
FTURUN, RECIPE, LIBRARY = "fturun", "recipe", "transformers"
MAX_LOADER_WORKERS = 4


@dataclass(frozen=True)
class Choice:
    """One default: the recipe key (``training.bf16``), its value, why, and who chose it."""

    key: str
    value: Any
    reason: str
    source: str = FTURUN

    def tag(self) -> str:
        """The tag value: the value and who chose it (``group_by_length (chosen by fturun)``)."""
        who = "kept from the recipe" if self.source == RECIPE else "chosen by fturun"
        return f"{_show(self.value)} ({who})"

    def line(self) -> str:
        """``chosen: KEY=VALUE because REASON`` (the recipe's own setting: ``kept: ...``)."""
        verb = "kept" if self.source == RECIPE else "chosen"
        return f"{verb}: {self.key}={_show(self.value)} because {self.reason}"

    def record(self) -> dict:
        return asdict(self)


def _show(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_defaults(data: dict, training: dict, hw: Hardware, *, cpus: int | None = None,
                    model_dtype: str = "float32", train_columns=None,
                    attention: str | None = None) -> list:
    """The speed defaults for ``data`` (the recipe), given the TrainingArguments kwargs so far
    (``training``: a key present there is the recipe's), the device ``hw``, ``cpus`` CPUs on
    this node, the dtype the model was loaded in, the train split's columns (None: a streamed
    dataset) and the loaded model's attention implementation. Returns :class:`Choice` s: those
    fturun chose, and, for a key the recipe set, the recipe's value (``source="recipe"``)."""
    cuda = hw.cuda and not training.get("use_cpu")
    choices = [_sampling(data, train_columns)]
    if cuda:
        choices += _precision(data, training, model_dtype, hw) + [_tf32(hw)]
    choices += _loader(cuda, cpus or usable_cpus(), int_env("LOCAL_WORLD_SIZE", 1, hw.environ))
    choices = [c for c in choices if c is not None]
    choices = [_kept(c, training) for c in choices]
    if not training.get("dataloader_num_workers", 1):  # the recipe's 0 workers: none to keep
        choices = [c for c in choices if c.key != "training.dataloader_persistent_workers"
                   or c.source == RECIPE]
    return choices + ([_attention(data, attention)] if attention else [])


def _kept(choice: Choice, training: dict) -> Choice:
    """A key the recipe sets wins: the choice records the recipe's value instead."""
    name = choice.key.removeprefix("training.")
    if choice.source == RECIPE or name not in training:
        return choice
    return Choice(choice.key, training[name], f"the recipe sets it (fturun's default "
                  f"{_show(choice.value)}: {choice.reason})", RECIPE)


def _sampling(data: dict, train_columns) -> Choice | None:
    data_cfg = data.get("data") or {}
    if data_cfg.get("padding") == "max_length" or data_cfg.get("block_size") or \
            data_cfg.get("packing") or train_columns is None or "input_ids" not in train_columns:
        return None  # fixed-length rows, packed blocks or a stream: nothing to group
    return Choice("training.train_sampling_strategy", "group_by_length",
                  "padding is dynamic: batches of rows of similar length carry less padding "
                  "(set it to \"random\" for batches drawn at random)")


def _precision(data: dict, training: dict, model_dtype: str, hw: Hardware) -> list:
    """bf16 where the GPU has it, else fp16; one choice, so setting either key turns the
    default off. Not with DeepSpeed (its config says) or a model loaded in half precision."""
    if data.get("deepspeed") is not None or model_dtype != "float32":
        return []
    if "bf16" in training or "fp16" in training:
        key = "bf16" if "bf16" in training else "fp16"
        return [Choice(f"training.{key}", training[key],
                       "the recipe sets the precision (fturun's default: bf16 where the GPU "
                       "has it, else fp16)", RECIPE)]
    if hw.bf16:
        return [Choice("training.bf16", True, f"{hw.describe_gpu()} has bfloat16: mixed "
                       "precision at fp32's range, no loss scaling (set training.bf16 false "
                       "for fp32)")]
    return [Choice("training.fp16", True, f"{hw.describe_gpu()} has no bfloat16: fp16 mixed "
                   "precision with loss scaling (set training.fp16 false for fp32)")]


def _tf32(hw: Hardware) -> Choice | None:
    if hw.capability < (8, 0):
        return None
    return Choice("training.tf32", True, f"{hw.describe_gpu()} runs fp32 matmuls as TF32 "
                  "on its tensor cores (set training.tf32 false for full fp32 matmuls)")


def _loader(cuda: bool, cpus: int, processes: int) -> list:
    if not cuda:
        return [Choice("training.dataloader_pin_memory", False,
                       "there is no CUDA device: pinning only costs host memory"),
                Choice("training.dataloader_num_workers", 0,
                       "there is no GPU: the training step uses every CPU core, loader workers "
                       "would take cores from it")]
    per_process = max(cpus // max(processes, 1), 1)
    workers = min(MAX_LOADER_WORKERS, per_process - 1)
    choices = [Choice("training.dataloader_pin_memory", True,
                      "batches reach the GPU from pinned memory, copied asynchronously")]
    if workers < 1:
        return choices + [Choice("training.dataloader_num_workers", 0,
                                 f"{cpus} CPU(s) for {processes} process(es) leave none for "
                                 "loader workers")]
    return choices + [
        Choice("training.dataloader_num_workers", workers,
               f"{cpus} CPUs for {processes} process(es): {workers} workers collate batches "
               "while the GPU computes (one core left to the training loop)"),
        Choice("training.dataloader_persistent_workers", True,
               "the loader workers are kept across epochs and evaluations, not started again")]


def _attention(data: dict, attention: str) -> Choice:
    params = component_ref(data["model"])[1] if data.get("model") else {}
    if params.get("attn_implementation"):
        return Choice("model.params.attn_implementation", params["attn_implementation"],
                      "the recipe sets it", RECIPE)
    return Choice("model.params.attn_implementation", attention,
                  "transformers picks SDPA where the model and torch support it, else eager "
                  "(set model.params.attn_implementation to choose)", LIBRARY)


def apply_defaults(args_kwargs: dict, choices) -> dict:
    """Set each ``training.*`` key fturun chose that ``args_kwargs`` does not hold yet; returns
    what was set. With loader workers, the tokenizers library's own threads are turned off in
    the forked workers (``TOKENIZERS_PARALLELISM=false`` unless set): forking after it ran
    would warn and may deadlock."""
    applied = {}
    for choice in choices:
        name = choice.key.removeprefix("training.")
        if choice.source == FTURUN and choice.key.startswith("training.") and \
                name not in args_kwargs:
            args_kwargs[name] = applied[name] = choice.value
    if applied.get("dataloader_num_workers"):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return applied


def model_facts(model) -> tuple:
    """``(dtype, attention implementation)`` of a loaded model: the dtype of its first
    trainable floating parameter (``"float32"`` when none), the config's attention."""
    dtype = "float32"
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point():
            dtype = str(param.dtype).removeprefix("torch.")
            break
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return dtype, getattr(config, "_attn_implementation", None)


def speed_defaults(data: dict, args_kwargs: dict, model, train_dataset) -> list:
    """Choose (:func:`choose_defaults`, for this machine) and apply (:func:`apply_defaults`)
    the speed defaults of a built run; returns the choices."""
    dtype, attention = model_facts(model)
    columns = getattr(train_dataset, "column_names", None) if hasattr(train_dataset,
                                                                     "__len__") else None
    choices = choose_defaults(data, args_kwargs, Hardware.detect(), model_dtype=dtype,
                              train_columns=columns, attention=attention)
    apply_defaults(args_kwargs, choices)
    return choices


# --------------------------------------------------------------------------------------------
# the length-grouped sampler, with lengths read from Arrow


def arrow_lengths(dataset, column: str = "input_ids") -> list | None:
    """Lengths of ``column``'s rows of a ``datasets.Dataset`` (its indices mapping honoured),
    read from Arrow; None for anything else."""
    try:
        import pyarrow.compute as pc
        from datasets import Dataset
    except ImportError:
        return None
    if not isinstance(dataset, Dataset) or column not in dataset.column_names:
        return None
    values = dataset.with_format("arrow")[column]
    if hasattr(values, "column"):  # a one-column table
        values = values.column(0)
    return pc.list_value_length(values).to_pylist()


class ShuffledLengthGroups:
    """The Trainer's length grouping (:func:`get_length_grouped_indices`: shuffle, cut into
    mega-batches of up to 50 batches, sort each by length, longest batch first), with the
    batches then drawn in a shuffled order (the longest one still first, so an out-of-memory
    error comes at once). Without the shuffle, each mega-batch runs from its longest rows to
    its shortest: an ordering that cost 0.04 eval accuracy on tweets after 60 steps. Random
    numbers from torch's global generator, as the Trainer's samplers draw them."""

    def __init__(self, lengths: list, batch_size: int):
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        indices = get_length_grouped_indices(self.lengths, self.batch_size)
        batches = [indices[i:i + self.batch_size]
                   for i in range(0, len(indices), self.batch_size)]
        order = [0] + [1 + i for i in torch.randperm(len(batches) - 1).tolist()]
        return iter([i for b in order for i in batches[b]])


def install_length_sampler(trainer) -> None:
    """Make ``trainer`` draw its ``group_by_length`` batches with :class:`ShuffledLengthGroups`,
    the lengths read by :func:`arrow_lengths` (the Trainer's own sampler measures every row
    with a pass over the dataset: seconds for 20,000 rows, inside the train time). Nothing
    changes for another sampling strategy or dataset."""
    original = trainer._get_train_sampler

    def get_train_sampler(train_dataset=None):
        dataset = train_dataset if train_dataset is not None else trainer.train_dataset
        names = getattr(trainer.processing_class, "model_input_names", None) or ["input_ids"]
        lengths = arrow_lengths(dataset, names[0]) \
            if trainer.args.train_sampling_strategy == "group_by_length" else None
        if lengths is None:
            return original(train_dataset)
        return ShuffledLengthGroups(
            lengths, trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps)

    trainer._get_train_sampler = get_train_sampler
