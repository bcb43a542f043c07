"""The kto task's Trainer classes: TRL's ``KTOTrainer`` and ``KTOConfig``, taking what fturun
gives every Trainer (:class:`UnpairedConfig`: ``KTOConfig`` with TrainingArguments' defaults).
The reference model is the model as training starts, as for the preference task: a frozen copy
(or, with an adapter, the model with its adapter disabled). The rows arrive tokenized by the
task; TRL only adds each batch's mismatched KL completions."""

from __future__ import annotations

from trl import KTOConfig, KTOTrainer

from fturun.api import RecipeRuntimeError

from .trainer import frozen_reference, with_training_defaults

# KTO reads its batches in order (each batch's KL completions are that batch's, rotated)
UnpairedConfig = with_training_defaults("UnpairedConfig", KTOConfig,
                                        keep=("train_sampling_strategy",), module=__name__)


class UnpairedTrainer(KTOTrainer):
    """``KTOTrainer`` as fturun calls a Trainer (see the module)."""

    def __init__(self, *, model, args, compute_loss_func=None, optimizer_cls_and_kwargs=None,
                 preprocess_logits_for_metrics=None, **kwargs):
        if compute_loss_func is not None:
            raise RecipeRuntimeError("task 'kto' trains on KTO's loss: remove 'loss' and "
                                     "choose it with training.loss_type")
        super().__init__(model=model, ref_model=frozen_reference(model, args), args=args,
                         **kwargs)
        if optimizer_cls_and_kwargs is not None:
            self.optimizer_cls_and_kwargs = optimizer_cls_and_kwargs

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" not in dataset.column_names:
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.calculate_KL:
            return dataset

        def add_kl_completion_ids(rows):  # each batch's completions rotated by one, as TRL
            rows["KL_completion_ids"] = [rows["completion_ids"][-1]] + rows["completion_ids"][:-1]
            return rows

        return dataset.map(add_kl_completion_ids, batched=True,
                           batch_size=args.per_device_train_batch_size,
                           desc=f"KL completions of {dataset_name}")
