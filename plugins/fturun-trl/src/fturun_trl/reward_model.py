"""The ``reward_model`` task's callables and the ``reward_model`` reward (nothing heavy at
import).

The task trains a sequence-classification model with one output, the reward, on preference
pairs (``prompt``, ``chosen``, ``rejected``): TRL's ``RewardTrainer`` raises the reward of
prompt+chosen over prompt+rejected. A text is tokenized as the preference task tokenizes a
pair (the prompt with the tokenizer's special tokens, then the answer ended by the end token,
cut to ``data.max_length``), and the ``reward_model`` reward scores a completion exactly so:
what the model learned to score is what GRPO asks it to score.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError

from .task import _tokenize_pairs, end_token_id

#: what TRL's RewardTrainer logs at each log and evaluation (``eval_`` + these)
TRAINER_METRICS = ("accuracy", "margin", "mean_reward", "min_reward", "max_reward")


def prepare(sources: dict, recipe_data: dict, context) -> dict:
    """One output: the reward."""
    context.model_kwargs = {**(context.model_kwargs or {}), "num_labels": 1}
    return sources


def tokenize(ds, tokenizer, settings, split):
    """Pairs -> ``chosen_ids`` (prompt + chosen) and ``rejected_ids`` (prompt + rejected)."""
    return ds.map(_joined_pairs, batched=True, remove_columns=["prompt", "chosen", "rejected"],
                  fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_length,
                             "end": end_token_id(tokenizer)},
                  desc=f"tokenize {split} pairs")


def _joined_pairs(batch, tokenizer, max_length, end):
    parts = _tokenize_pairs(batch, tokenizer, max_length, end)
    return {f"{side}_ids": [p + a for p, a in zip(parts["prompt_ids"], parts[f"{side}_ids"])]
            for side in ("chosen", "rejected")}


def pairs_collator(params, context):
    """TRL's reward ``DataCollatorForPreference``: the chosen texts, then the rejected ones,
    padded with the pad token (else the end token)."""
    from trl.trainer.reward_trainer import DataCollatorForPreference

    tokenizer = context.tokenizer
    pad = tokenizer.pad_token_id
    return DataCollatorForPreference(pad_token_id=end_token_id(tokenizer) if pad is None else pad)


def metric_inputs(eval_pred, context):
    """The reward_model task's metrics are the ones its Trainer logs."""
    raise RecipeRuntimeError("task 'reward_model' logs its own metrics (eval_accuracy, "
                             "eval_margin, ...): remove 'metrics' from the recipe")


REWARD_MODEL_SCHEMA = {"type": "object", "required": ["model"], "properties": {
    "model": {"type": "string", "minLength": 1,
              "description": "the reward model: a registered model (models:/NAME@ALIAS or "
                             "models:/NAME/VERSION), the id of the reward_model run that "
                             "trained it, or its model/ folder (relative to the recipe, or "
                             "package:NAME/...)"},
    "max_length": {"type": "integer", "minimum": 2, "default": 256,
                   "description": "tokens of prompt + completion scored"},
    "batch_size": {"type": "integer", "minimum": 1, "default": 16},
}}


def _text(value) -> str:
    """A prompt or completion as text: itself, or its messages' contents joined."""
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value)
    return str(value)


def reward_model(params, context):
    """Scores of a sequence-classification reward model (e.g. what the reward_model task
    saved): its output for prompt + completion, tokenized as it was trained."""
    import torch

    ref = params["model"]
    try:
        model, tokenizer = _load_scorer(context.resolve_model(ref))
    except (OSError, ValueError, RecipeRuntimeError) as exc:
        raise RecipeRuntimeError(f"reward 'reward_model': cannot load the reward model {ref}: "
                                 f"{exc}; set params.model to models:/NAME@ALIAS, the id of "
                                 "the reward_model run, or its model/ folder") from None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else end_token_id(tokenizer)
    model.config.pad_token_id = pad
    end, size = end_token_id(tokenizer), params["batch_size"]

    def score(prompts, completions, **columns):
        batch = {"prompt": [_text(p) for p in prompts], "chosen": [_text(c) for c in completions],
                 "rejected": [""] * len(completions)}
        ids = _joined_pairs(batch, tokenizer, params["max_length"], end)["chosen_ids"]
        scores = []
        with torch.no_grad():
            for start in range(0, len(ids), size):
                rows = ids[start:start + size]
                width = max(len(r) for r in rows)
                input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
                logits = model(input_ids=input_ids, attention_mask=mask).logits
                scores += logits[:, 0].float().tolist()
        return scores

    score.__name__ = "reward_model"
    return score


def _load_scorer(path: str):
    """The one-output sequence-classification model in ``path`` (an adapter merged into its
    base when the reward_model run trained one), in eval mode, and its tokenizer."""
    import os

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if os.path.exists(os.path.join(path, "adapter_config.json")):
        from peft import AutoPeftModelForSequenceClassification

        model = AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=1)
        model = model.merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    return model.eval(), tokenizer
