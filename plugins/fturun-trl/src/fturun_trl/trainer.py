"""The preference task's Trainer classes: TRL's ``DPOTrainer`` and ``DPOConfig``, taking what
fturun gives every Trainer.

- :class:`PreferenceConfig`: ``DPOConfig`` with TrainingArguments' own defaults for the fields
  both have (``learning_rate``, ``logging_steps``, ``bf16``, ``gradient_checkpointing``, ...),
  so that ``training`` means the same in every fturun task (its schema states those defaults),
  and DPO's settings as TRL has them.
- :class:`PreferenceTrainer`: ``DPOTrainer`` called as fturun calls a Trainer. The reference
  model is the model as training starts: a frozen copy made before the first step (so a
  ``--resume`` gets the same reference), or, with a PEFT adapter, the model with its adapter
  disabled (no copy); ``training.precompute_ref_log_probs`` computes the reference's log-probs
  once instead. The pairs arrive tokenized by the task (TRL's own tokenizing is skipped).
"""

from __future__ import annotations

import copy
import dataclasses

from transformers import TrainingArguments
from trl import DPOConfig, DPOTrainer

from fturun.api import RecipeRuntimeError


def _training_arguments_defaults(config, keep=()) -> list:
    """``(name, type, field)`` for each TrainingArguments field whose default ``config``
    changed (but those in ``keep``), with TrainingArguments' default back."""
    base = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    changed = []
    for f in dataclasses.fields(config):
        original = base.get(f.name)
        if original is None or not f.init or f.name in keep:
            continue
        if (f.default, f.default_factory) != (original.default, original.default_factory):
            kwargs = {"default": original.default} \
                if original.default is not dataclasses.MISSING \
                else {"default_factory": original.default_factory}
            changed.append((f.name, f.type, dataclasses.field(metadata=original.metadata,
                                                              **kwargs)))
    return changed


def with_training_defaults(name: str, config, keep=(), module: str = __name__):
    """``config`` (a TRL config class) with TrainingArguments' defaults for the fields both
    have, but ``keep`` (see the module); ``module``: where the class is defined (pickling)."""
    return dataclasses.make_dataclass(
        name, _training_arguments_defaults(config, keep), bases=(config,),
        namespace={"__doc__": f"{config.__name__} with TrainingArguments' defaults",
                   "__module__": module})


PreferenceConfig = with_training_defaults("PreferenceConfig", DPOConfig)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def frozen_reference(model, args):
    """The reference model a preference loss compares with: a frozen copy of ``model`` as
    training starts, or None when TRL needs none (a peft model: the model without its adapter;
    precomputed reference log-probs)."""
    if _is_peft(model) or args.precompute_ref_log_probs:
        return None
    ref_model = copy.deepcopy(model).eval()  # the model as training starts
    ref_model.requires_grad_(False)
    return ref_model


class PreferenceTrainer(DPOTrainer):
    """``DPOTrainer`` as fturun calls a Trainer (see the module)."""

    def __init__(self, *, model, args, compute_loss_func=None, optimizer_cls_and_kwargs=None,
                 preprocess_logits_for_metrics=None, **kwargs):
        if compute_loss_func is not None:
            raise RecipeRuntimeError("task 'preference' trains on DPO's loss: remove 'loss' "
                                     "and choose it with training.loss_type")
        super().__init__(model=model, ref_model=frozen_reference(model, args), args=args,
                         **kwargs)
        if _is_peft(self.model) and "ref" in self.model.peft_config:
            # TRL copies the adapter as a "ref" adapter; the reference is the model without
            # the adapter instead (the same model for a fresh LoRA, and no copy kept)
            self.model.delete_adapter("ref")
            self.model.set_adapter("default")
        if optimizer_cls_and_kwargs is not None:
            self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
        if preprocess_logits_for_metrics is not None:
            self.preprocess_logits_for_metrics = preprocess_logits_for_metrics

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" in dataset.column_names:  # tokenized by the task
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
