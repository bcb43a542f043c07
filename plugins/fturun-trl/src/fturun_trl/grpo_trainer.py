"""The grpo task's Trainer classes: TRL's ``GRPOTrainer`` and ``GRPOConfig``, taking what fturun
gives every Trainer.

- :class:`GroupConfig`: ``GRPOConfig`` with TrainingArguments' own defaults for the fields both
  have (``learning_rate``, ``logging_steps``, ``bf16``, ``gradient_checkpointing``), as in every
  fturun task, but ``remove_unused_columns`` (False: the rewards read the rows' columns).
- :class:`GroupTrainer`: ``GRPOTrainer`` called as fturun calls a Trainer: the recipe's rewards
  arrive as ``reward_funcs`` (checked, :mod:`fturun.run.rewards`) with their weights in
  ``training.reward_weights``; a model with an adapter (LoRA) is trained as it is; a tokenizer
  without an end token (a BERT-style one) ends completions with its sep token.
"""

from __future__ import annotations

from trl import GRPOConfig, GRPOTrainer

from fturun.api import RecipeRuntimeError

from .trainer import with_training_defaults

GroupConfig = with_training_defaults("GroupConfig", GRPOConfig, keep=("remove_unused_columns",),
                                     module=__name__)


def end_tokens(tokenizer) -> None:
    """An eos (the sep token, else the pad token) and a pad token for a tokenizer without
    them: generation stops at eos and pads with pad."""
    if tokenizer.eos_token is None:
        end = tokenizer.sep_token or tokenizer.pad_token
        if end is None:
            raise RecipeRuntimeError("task 'grpo': the tokenizer has no eos, sep or pad token "
                                     "to end completions with; use a tokenizer that has one")
        tokenizer.eos_token = end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


class GroupTrainer(GRPOTrainer):
    """``GRPOTrainer`` as fturun calls a Trainer (see the module)."""

    def __init__(self, *, model, args, reward_funcs, compute_loss_func=None,
                 data_collator=None, compute_metrics=None, optimizer_cls_and_kwargs=None,
                 preprocess_logits_for_metrics=None, **kwargs):
        if compute_loss_func is not None:
            raise RecipeRuntimeError("task 'grpo' trains on GRPO's loss: remove 'loss' and "
                                     "choose it with training.loss_type")
        if compute_metrics is not None:
            raise RecipeRuntimeError("task 'grpo' logs its own metrics (reward, "
                                     "rewards/<name>/mean, ...): remove 'metrics'")
        end_tokens(kwargs["processing_class"])
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        if optimizer_cls_and_kwargs is not None:
            self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
