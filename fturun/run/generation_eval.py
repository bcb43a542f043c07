"""Generation-based evaluation: at each evaluation, a task with ``Task.answer_prompts`` (the
causal LM) generates the answers to the prompts of the first ``generation.eval_rows`` eval rows
(default :data:`~fturun.plugin.tasks.DEFAULT_EVAL_ROWS`), and the task's ``generation_metrics``
(ROUGE,
BLEU, exact match) score them against the rows' answers.

The scores join the evaluation's metrics as ``eval_rouge1``, ``eval_bleu``,
``eval_exact_match``, ...: in what ``Trainer.evaluate`` returns (so ``metric_for_best_model``
and early stopping can watch them, and ``eval_results.json`` has them), in the evaluation's
entry of the Trainer's log history (``trainer_state.json``) and in the run's MLflow metrics at
the evaluation's step. The cost is bounded: ``eval_rows`` generations of at most
``generation.max_new_tokens`` tokens per evaluation, whatever the size of the eval split.
"""

from __future__ import annotations

from ..plugin.tasks import generation_eval_rows
from ..recipe.refs import component_ref
from .build import build_component


def add_generation_eval(build, registry) -> None:
    """Put the run's generation-based evaluation (if it has one) first among the build's
    Trainer callbacks: those after it (early stopping on ``eval_exact_match``) see its
    scores."""
    callback = generation_eval_callback(build, registry)
    if callback is not None:
        build.trainer_kwargs["callbacks"] = [callback,
                                             *(build.trainer_kwargs.get("callbacks") or [])]


def generation_eval_callback(build, registry):
    """The TrainerCallback of a run's generation-based evaluation, or None when it has none:
    no eval split, a task without ``answer_prompts``, or ``generation.eval_rows`` 0."""
    context = build.context
    task = context.task_record
    rows = generation_eval_rows(context.recipe)
    if task.answer_prompts is None or not task.generation_metrics or rows == 0 or \
            build.splits.get("eval") is None:
        return None
    metric_fns = [(component_ref(ref)[0], build_component(registry, "metric", ref, context))
                  for ref in task.generation_metrics]
    return _callback(context, (context.samples or {}).get("eval", [])[:rows], metric_fns)


def score_answers(samples: list, metric_fns) -> dict:
    """``{name: value}`` of the metric functions on generated answers (``"generated"``) against
    their references (``"reference"``)."""
    predictions = [sample["generated"] for sample in samples]
    references = [sample["reference"] for sample in samples]
    scores = {}
    for _, metric_fn in metric_fns:
        scores.update(metric_fn(predictions, references))
    return {key: float(value) for key, value in scores.items()}


def _callback(context, rows: list, metric_fns):
    from transformers import TrainerCallback

    class GenerationEval(TrainerCallback):
        """Adds the scores of the generated answers to each evaluation's metrics."""

        def __init__(self):
            self.rows = rows  # the raw eval rows whose prompts are answered

        def on_evaluate(self, args, state, control, metrics=None, model=None,
                        processing_class=None, **kwargs):
            if not metrics or not any(key.startswith("eval_") for key in metrics):
                return  # another split's evaluation
            tokenizer = processing_class if processing_class is not None else context.tokenizer
            # every rank generates (ZeRO-3 needs them all); the rows are the same on each
            samples = context.task_record.answer_prompts(model, tokenizer, context, self.rows)
            if not samples:
                return
            scores = {f"eval_{k}": v for k, v in score_answers(samples, metric_fns).items()}
            metrics.update(scores)
            entry = state.log_history[-1] if state.log_history else {}
            if entry.get("step") == state.global_step and any(k in entry for k in metrics):
                entry.update(scores)  # the evaluation's entry, logged before this callback
            if state.is_world_process_zero:
                context.tracker.log_metrics(scores, state.global_step)
                context.log(f"generation eval on {len(samples)} eval rows: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in scores.items()))

    return GenerationEval()
