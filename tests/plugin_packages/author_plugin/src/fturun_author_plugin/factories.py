"""The factories: ``factory(params, context)``, heavy imports inside."""

from __future__ import annotations

import json
import os

from fturun.api import RecipeRuntimeError


def inline_rows(params, context):
    """A ``datasets.Dataset`` of the rows in the recipe."""
    from datasets import Dataset

    keys = {tuple(sorted(row)) for row in params["rows"]}
    if len(keys) > 1:
        raise RecipeRuntimeError("inline_rows: every row needs the same keys; found "
                                 + " and ".join(str(list(k)) for k in sorted(keys)))
    return Dataset.from_list(params["rows"])


def tiny_bert(params, context):
    """``(model, tokenizer)``: a BERT of the task's auto class, built with
    ``context.model_kwargs`` (what the data decided)."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        context.resolve_path(params["tokenizer"]))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=params["hidden_size"],
        num_hidden_layers=params["layers"], num_attention_heads=2,
        intermediate_size=2 * params["hidden_size"], max_position_embeddings=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **context.model_kwargs)
    auto_class = getattr(transformers, context.task_record.model_class)
    return auto_class.from_config(config), tokenizer


def freeze_embeddings(params, context):
    """``context.model`` with its input embeddings frozen."""
    model = context.model
    for parameter in model.get_input_embeddings().parameters():
        parameter.requires_grad = False
    return model


def pad_batch(params, context):
    """A collator padding each batch to its longest row."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(context.tokenizer,
                                   pad_to_multiple_of=params.get("pad_to_multiple_of"))


def _logits(outputs):
    return outputs["logits"] if isinstance(outputs, dict) else outputs[0]


def mse(params, context):
    """``loss(outputs, labels)``: the mean squared error over the batch."""
    import torch.nn.functional as F

    def loss(outputs, labels):
        predictions = _logits(outputs).squeeze(-1).float()
        return F.mse_loss(predictions, labels.float().to(predictions.device))

    return loss


def plain_ce(params, context):
    """``loss(outputs, labels)``: cross entropy, the mean over the labelled items."""
    import torch.nn.functional as F

    def loss(outputs, labels):
        logits = _logits(outputs).float()
        flat = labels.reshape(-1).to(logits.device)
        if not (flat != -100).any():
            return logits.sum() * 0.0  # no labelled item: 0, not NaN
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, ignore_index=-100)

    return loss


def mae(params, context):
    """``metric_fn(predictions, references) -> {"mae": float}``."""
    import numpy as np

    def metric_fn(predictions, references):
        errors = np.abs(np.asarray(predictions, dtype="float64").reshape(-1)
                        - np.asarray(references, dtype="float64").reshape(-1))
        return {"mae": float(errors.mean()) if errors.size else 0.0}

    return metric_fn


def step_logger(params, context):
    """A callback logging the learning rate through ``context.tracker`` every ``every`` steps,
    and writing ``<output_dir>/<filename>`` (logged as an artifact) when training ends."""
    from transformers import TrainerCallback

    every, filename = params["every"], params["filename"]

    class StepLogger(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            if state.global_step % every == 0:
                lr = optimizer.param_groups[0]["lr"] if optimizer is not None else None
                self.steps.append({"step": state.global_step, "lr": lr})
                context.tracker.log_metrics({"author_lr": lr}, state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path = os.path.join(args.output_dir, filename)
            os.makedirs(args.output_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"world_size": args.world_size, "steps": self.steps}, f)
            context.tracker.log_artifact(path)
            context.tracker.set_tags({"author.steps": str(len(self.steps))})

    return StepLogger()


def plain_sgd(params, context):
    """``{"optimizer_cls_and_kwargs": (PlainSGD, {"lr": ...})}``: the Trainer's parameter
    groups carry weight_decay but no lr, so lr goes into the kwargs."""
    from .optim import PlainSGD

    lr = params.get("lr", context.training_arg("learning_rate"))
    return {"optimizer_cls_and_kwargs": (PlainSGD, {"lr": lr})}


def halving(params, context):
    """``{"scheduler": make}``: a LambdaLR halving the learning rate every N steps."""
    every = params["every"]

    def make(optimizer, num_training_steps):
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optimizer, lambda step: 0.5 ** (step // every))

    return {"scheduler": make}


def shouting(params, context):
    """Score each completion by its share of upper-case letters (0 without letters: None)."""
    def shouting_reward(prompts, completions, **columns):
        scores = []
        for completion in completions:
            text = completion if isinstance(completion, str) else completion[-1]["content"]
            letters = [ch for ch in text if ch.isalpha()]
            scores.append(sum(ch.isupper() for ch in letters) / len(letters) * params["scale"]
                          if letters else None)
        return scores

    return shouting_reward
