"""What each task changes in the Trainer run, beyond the data (:mod:`fturun.data`), the model class
(:mod:`fturun.builtin.models`) and the default collator (``fturun.runner.DEFAULT_COLLATORS``):

- the Trainer: ``Seq2SeqTrainer`` with ``predict_with_generate`` for seq2seq, the ``Trainer``
  otherwise;
- what metric functions receive (:func:`metric_inputs`): class ids (sequence classification),
  token ids at the labelled positions (masked and causal LM, so ``accuracy`` is token
  accuracy), tag names per sentence (token classification), decoded texts (seq2seq);
- loss-based metrics (``perplexity``, any metric whose function has ``uses_loss = True``) get
  the eval loss: the Trainer hands ``compute_metrics`` the per-batch losses
  (``include_for_metrics=["loss"]``) and their mean is the reported ``eval_loss``;
- language models and token classification arg-max the logits batch by batch
  (``preprocess_logits_for_metrics``), so evaluation never holds vocabulary-sized logits;
- generative tasks write a few sample generations at the end of a run (:func:`log_samples`).

The recipe's ``generation`` section (``max_new_tokens``, ``num_beams``, ``do_sample``,
``temperature``, ``top_k``, ``top_p``, ``prompts``, ``num_samples``) sets how seq2seq evaluation
and the samples generate.
"""

from __future__ import annotations

import json
import os

LANGUAGE_MODELS = ("masked-lm", "causal-lm")
GENERATIVE = ("causal-lm", "seq2seq")
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_NUM_SAMPLES = 3
GENERATE_KEYS = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_k", "top_p")


def generation_settings(recipe: dict) -> dict:
    """The recipe's ``generation`` section with its defaults, as ``generate()`` kwargs (the
    prompts and the number of samples apart)."""
    section = dict(recipe.get("generation") or {})
    kwargs = {"max_new_tokens": section.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
              "num_beams": section.get("num_beams", 1),
              "do_sample": section.get("do_sample", False)}
    for key in ("temperature", "top_k", "top_p"):
        if key in section:
            kwargs[key] = section[key]
    return kwargs


def configure_task(context, metric_fns, args_kwargs: dict, trainer_kwargs: dict) -> None:
    """Task-specific TrainingArguments and Trainer kwargs (see the module docstring)."""
    task = context.task
    if any(getattr(fn, "uses_loss", False) for _, fn in metric_fns):
        include = args_kwargs.get("include_for_metrics") or []
        args_kwargs["include_for_metrics"] = list(dict.fromkeys([*include, "loss"]))
    if metric_fns and (task in LANGUAGE_MODELS or task == "token-classification"):
        trainer_kwargs["preprocess_logits_for_metrics"] = argmax_logits
    if task == "seq2seq":
        args_kwargs["predict_with_generate"] = True
        settings = generation_settings(context.recipe)
        config = getattr(context.model, "generation_config", None)
        if config is not None:
            for key, value in settings.items():
                setattr(config, key, value)


def trainer_classes(task: str):
    """``(Trainer class, TrainingArguments class)`` for ``task``."""
    if task == "seq2seq":
        from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

        return Seq2SeqTrainer, Seq2SeqTrainingArguments
    from transformers import Trainer, TrainingArguments

    return Trainer, TrainingArguments


def argmax_logits(logits, labels):
    """Keep the arg-max token/tag ids of a batch instead of its logits."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def metric_inputs(eval_pred, context):
    """``(predictions, references)`` for the metric functions of ``context.task``."""
    import numpy as np

    task = getattr(context, "task", "sequence-classification")
    predictions = eval_pred.predictions
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    references = eval_pred.label_ids
    if task in LANGUAGE_MODELS:
        predictions, references = np.asarray(predictions), np.asarray(references)
        if task == "causal-lm":  # the logits at position i predict the token at i + 1
            predictions, references = predictions[:, :-1], references[:, 1:]
        keep = references != -100
        return predictions[keep], references[keep]
    if task == "token-classification":
        names = list(context.label_names or [])
        predicted, true = [], []
        for row_predictions, row_labels in zip(np.asarray(predictions), np.asarray(references)):
            keep = row_labels != -100
            predicted.append([names[i] for i in row_predictions[keep]])
            true.append([names[i] for i in row_labels[keep]])
        return predicted, true
    if task == "seq2seq":
        return decode(predictions, context.tokenizer), decode(references, context.tokenizer)
    return np.argmax(predictions, axis=-1), references


def decode(ids, tokenizer) -> list:
    """Texts of a batch of token ids (-100 padding included)."""
    import numpy as np

    ids = np.asarray(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.where(ids < 0, pad, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def loss_from_eval_pred(eval_pred):
    """The eval loss (mean of the per-example batch losses), or None when not gathered."""
    import numpy as np

    losses = getattr(eval_pred, "losses", None)
    if losses is None:
        return None
    losses = np.asarray(losses, dtype="float64").reshape(-1)
    losses = losses[np.isfinite(losses)]
    return float(losses.mean()) if losses.size else None


# --------------------------------------------------------------------------------------------
# sample generations and predictions


def sample_prompts(context) -> list:
    """``[(prompt, reference or None)]``: ``generation.prompts``, else the first rows of the
    eval (or train) data (``context.samples``)."""
    section = context.recipe.get("generation") or {}
    count = section.get("num_samples", DEFAULT_NUM_SAMPLES)
    if count == 0:
        return []
    if section.get("prompts"):
        return [(prompt, None) for prompt in section["prompts"]][:count]
    rows = (context.samples or {}).get("eval") or (context.samples or {}).get("train") or []
    prompts = []
    for row in rows[:count]:
        if context.task == "seq2seq" or "text_pair" in row:
            prompts.append((row["text"], row.get("target", row.get("text_pair"))))
        else:  # plain text: its first words start the generation
            words = str(row["text"]).split()
            prompts.append((" ".join(words[:8]), " ".join(words[8:24]) or None))
    return prompts


def generate_samples(model, tokenizer, context) -> list:
    """``[{"prompt", "generated", "reference"}]`` for :func:`sample_prompts`."""
    import torch

    prompts = sample_prompts(context)
    if not prompts:
        return []
    pairs = bool((context.recipe.get("data") or {}).get("columns", {}).get("text_pair"))
    settings = generation_settings(context.recipe)
    device = next(model.parameters()).device
    special = {i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id) if i is not None}
    was_training = model.training
    model.eval()
    samples = []
    try:
        for prompt, reference in prompts:
            ids = tokenizer(prompt, return_token_type_ids=False)["input_ids"]
            if context.task == "causal-lm" and not pairs and len(ids) > 1 and ids[-1] in special:
                ids = ids[:-1]  # continue the text, do not end it
            input_ids = torch.tensor([ids], device=device)
            with torch.no_grad():
                output = model.generate(input_ids=input_ids,
                                        attention_mask=torch.ones_like(input_ids),
                                        pad_token_id=tokenizer.pad_token_id, use_cache=True,
                                        **settings)
            generated = output[0, input_ids.shape[1]:] if context.task == "causal-lm" \
                else output[0]
            samples.append({"prompt": prompt,
                             "generated": tokenizer.decode(generated,
                                                           skip_special_tokens=True).strip(),
                             "reference": reference})
    finally:
        model.train(was_training)
    return samples


def log_samples(model, tokenizer, context, output_dir: str) -> list:
    """Generate the samples, print them, write ``samples.txt`` in ``output_dir`` and log it to
    the run's tracker (``samples/``)."""
    samples = generate_samples(model, tokenizer, context)  # every rank: ZeRO-3 needs them all
    from .launch import is_main_process

    if not samples or not is_main_process():  # one process prints, writes and logs
        return samples
    lines = []
    for sample in samples:
        lines.append(f"prompt:    {sample['prompt']}")
        lines.append(f"generated: {sample['generated']}")
        if sample["reference"]:
            lines.append(f"reference: {sample['reference']}")
        lines.append("")
    text = "\n".join(lines)
    print("\nsample generations:\n" + "\n".join("  " + line for line in lines))
    path = os.path.join(output_dir, "samples.txt")
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    tracker = getattr(context, "tracker", None)
    if tracker is not None and hasattr(tracker, "log_artifact"):
        tracker.log_artifact(path, "samples")
    return samples


def write_predictions(prediction, context, path: str) -> bool:
    """Test predictions of the tasks other than sequence classification, one JSON line per row:
    tag lists (token classification) or texts (seq2seq). Language models write none (their
    test figures are the loss and perplexity). Returns whether a file was written."""
    import numpy as np

    task = context.task
    if task in LANGUAGE_MODELS:
        return False
    predictions = prediction.predictions
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    labels = prediction.label_ids
    if task == "token-classification":
        names = list(context.label_names or [])
        if np.asarray(predictions).ndim == 3:
            predictions = np.argmax(predictions, axis=-1)
        rows = []
        for i, row in enumerate(np.asarray(predictions)):
            keep = np.asarray(labels[i]) != -100
            rows.append({"prediction": [names[t] for t in row[keep]],
                         "label": [names[t] for t in np.asarray(labels[i])[keep]]})
    elif task == "seq2seq":
        texts = decode(predictions, context.tokenizer)
        truth = decode(labels, context.tokenizer) if labels is not None else [None] * len(texts)
        rows = [{"prediction": p, **({"label": t} if t is not None else {})}
                for p, t in zip(texts, truth)]
    else:
        return False
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return True
