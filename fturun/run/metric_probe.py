"""Metrics checked against the task before training (layer 4): each metric function is called
once on the model's predictions for two eval rows, exactly as an evaluation calls it, so a
metric that cannot score this task's outputs (``seqeval`` on sequence classification) is
refused at its recipe key before the first step instead of failing the first evaluation."""

from __future__ import annotations

from ..core.errors import Problem, RecipeError, RecipeRuntimeError
from ..recipe.refs import component_name

PROBE_ROWS = 2


def check_metrics(trainer, build, recipe) -> None:
    """Raise :class:`RecipeError` (exit 2) naming each metric of the recipe's ``metrics`` that
    fails on this task's predictions; a task default that fails is a
    :class:`RecipeRuntimeError`. Skipped without an eval split or metrics, and where the model
    is placed only once training starts (DeepSpeed, FSDP)."""
    eval_ds = build.splits.get("eval")
    metric_fns = getattr(build, "metric_fns", None)
    if eval_ds is None or len(eval_ds) == 0 or not metric_fns or \
            trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return
    eval_pred = _predict_rows(trainer, eval_ds.select(range(min(PROBE_ROWS, len(eval_ds)))))
    context = build.context
    predictions, references = context.task_record.metric_inputs(eval_pred, context)
    listed = recipe.data.get("metrics") if isinstance(recipe.data.get("metrics"), list) else []
    problems, others = [], []
    for name, metric_fn in metric_fns:
        try:
            if getattr(metric_fn, "uses_loss", False):
                metric_fn(predictions, references, eval_loss=1.0)
            else:
                metric_fn(predictions, references)
        except Exception as exc:  # noqa: BLE001 - any failure: this metric cannot score it
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            where = [i for i, ref in enumerate(listed) if component_name(ref) == name]
            text = (f"metric '{name}' cannot score the outputs of task '{context.task}' "
                    f"(on two eval rows: {why})")
            if where:
                problems.append(Problem.located(
                    recipe.locate, f"$.metrics[{where[0]}]",
                    text + "; remove it, or use a metric of this task (fturun components "
                    "metric)", recipe.path))
            else:
                others.append(text)
    if problems:
        raise RecipeError(problems)
    if others:
        raise RecipeRuntimeError("; ".join(others))


def _predict_rows(trainer, rows):
    """The ``EvalPrediction`` of ``rows`` as an evaluation builds it (the Trainer's prediction
    step and logits preprocessing), without its callbacks or logging; random states kept (the
    test loader: the Trainer keeps no copy of it, unlike the eval loader's)."""
    import torch
    from transformers import EvalPrediction
    from transformers.trainer_pt_utils import nested_detach, nested_numpify

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    model = trainer.model
    was_training = model.training
    with torch.random.fork_rng(devices=devices):
        model.eval()
        try:
            batch = trainer._prepare_inputs(next(iter(trainer.get_test_dataloader(rows))))
            loss, logits, labels = trainer.prediction_step(model, batch,
                                                           prediction_loss_only=False)
            if trainer.preprocess_logits_for_metrics is not None and logits is not None:
                logits = trainer.preprocess_logits_for_metrics(logits, labels)
        finally:
            model.train(was_training)
    losses = None if loss is None else loss.detach().reshape(1).repeat(len(rows))
    return EvalPrediction(predictions=nested_numpify(nested_detach(logits)),
                          label_ids=None if labels is None else nested_numpify(labels),
                          losses=None if losses is None else nested_numpify(losses))
