"""The reward_model task's Trainer classes: TRL's ``RewardTrainer`` and ``RewardConfig``, taking
what fturun gives every Trainer (:class:`ScoreConfig`: ``RewardConfig`` with TrainingArguments'
defaults, as in every fturun task). The pairs arrive tokenized by the task (``chosen_ids``,
``rejected_ids``), which TRL takes as they are."""

from __future__ import annotations

from trl import RewardConfig, RewardTrainer

from fturun.api import RecipeRuntimeError

from .trainer import with_training_defaults

ScoreConfig = with_training_defaults("ScoreConfig", RewardConfig, module=__name__)


class ScoreTrainer(RewardTrainer):
    """``RewardTrainer`` as fturun calls a Trainer."""

    def __init__(self, *, model, args, compute_loss_func=None, optimizer_cls_and_kwargs=None,
                 preprocess_logits_for_metrics=None, **kwargs):
        if compute_loss_func is not None:
            raise RecipeRuntimeError("task 'reward_model' trains on the pairwise reward loss: "
                                     "remove 'loss'")
        super().__init__(model=model, args=args, **kwargs)
        if optimizer_cls_and_kwargs is not None:
            self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs
