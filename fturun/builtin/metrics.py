"""Built-in evaluation metrics, computed through ``evaluate`` modules that ship inside fturun (see
``metric_modules/``), so they work offline. Multi-class precision/recall/f1 average 'macro' unless
the recipe says otherwise.

What a metric function receives depends on the task (see :mod:`fturun.plugin.tasks`): class ids
(sequence classification), token ids at the labelled positions (language models), lists of tag
names per sentence (token classification: ``seqeval``), or decoded texts (seq2seq: ``rouge``,
``bleu``, ``exact_match``; also a causal LM's generated answers, :mod:`.task_answers`).
``perplexity`` uses the eval loss."""

from __future__ import annotations

import os

from fturun.api import hookimpl

MODULE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metric_modules")

AVERAGE_SCHEMA = {"type": "object", "properties": {
    "average": {"enum": ["macro", "micro", "weighted", "binary"], "default": "macro",
                "description": "how per-class scores are combined; 'binary' needs two labels"}}}
NO_PARAMS = {"type": "object", "properties": {}}
ROUGE_SCHEMA = {"type": "object", "x-fturun-keys": "rouge([1-9]|L)", "properties": {
    "rouge_types": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "pattern": "^rouge([1-9]|L)$"},
                    "default": ["rouge1", "rouge2", "rougeL"],
                    "description": "rouge1..rouge9 (n-gram overlap) and rougeL (longest common "
                                   "subsequence)"}}}
BLEU_SCHEMA = {"type": "object", "properties": {
    "max_order": {"type": "integer", "minimum": 1, "maximum": 9, "default": 4,
                  "description": "the longest n-gram counted"},
    "smooth": {"type": "boolean", "default": False,
               "description": "add-one smoothing of the n-gram precisions (short texts)"}}}
EXACT_MATCH_SCHEMA = {"type": "object", "properties": {
    "normalize": {"enum": ["words", "whitespace", "none"], "default": "words",
                  "description": "'words': lowercase words of letters and digits must be equal "
                                 "(punctuation and spacing ignored); 'whitespace': only runs "
                                 "of whitespace ignored; 'none': the exact strings"}}}
SEQEVAL_SCHEMA = {"type": "object", "properties": {
    "mode": {"enum": ["default", "strict"], "default": "default",
             "description": "'default': conlleval span rules (an I- tag may start an entity); "
                            "'strict': IOB2, entities start at B- only"}}}


#: metrics of the one ``classification`` module, chosen by its config name
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "matthews_correlation")


def load_module(name):
    """Load a local evaluate module by name (no Hub access): ``rouge``, ``bleu``,
    ``exact_match``, ``seqeval``,
    or a classification metric (``metric_modules/classification.py`` with that config)."""
    import evaluate

    if name in CLASSIFICATION:
        return evaluate.load(os.path.join(MODULE_DIR, "classification.py"), name)
    return evaluate.load(os.path.join(MODULE_DIR, f"{name}.py"))


def _metric_factory(name):
    def build(params, context):
        """``metric_fn(predictions, references) -> {name: value}``."""
        module = load_module(name)
        kwargs = dict(params)

        def metric_fn(predictions, references):
            return module.compute(predictions=predictions, references=references, **kwargs)

        return metric_fn

    return build


def perplexity(params, context):
    """Perplexity, exp(eval loss): computed by the runner from the eval loss of LM tasks."""
    import math

    def metric_fn(predictions, references, eval_loss=None):
        if eval_loss is None:
            return {}
        return {"perplexity": math.exp(min(eval_loss, 50.0))}

    metric_fn.uses_loss = True
    return metric_fn


@hookimpl
def fturun_register_metrics(register):
    """The built-in metrics."""
    register("accuracy", _metric_factory("accuracy"), NO_PARAMS, "Fraction of correct predictions")
    register("precision", _metric_factory("precision"), AVERAGE_SCHEMA,
             "Precision (macro-averaged over classes by default)")
    register("recall", _metric_factory("recall"), AVERAGE_SCHEMA,
             "Recall (macro-averaged over classes by default)")
    register("f1", _metric_factory("f1"), AVERAGE_SCHEMA,
             "F1 score (macro-averaged over classes by default)")
    register("matthews_correlation", _metric_factory("matthews_correlation"), NO_PARAMS,
             "Matthews correlation coefficient (robust to class imbalance)")
    register("perplexity", perplexity, NO_PARAMS, "exp(eval loss), for language-model tasks")
    register("rouge", _metric_factory("rouge"), ROUGE_SCHEMA,
             "seq2seq: ROUGE-1/2/L F-measure of generated vs target texts (rouge1, rouge2, rougeL)")
    register("bleu", _metric_factory("bleu"), BLEU_SCHEMA,
             "seq2seq: corpus BLEU of generated vs target texts (bleu, bleu_brevity_penalty)")
    register("exact_match", _metric_factory("exact_match"), EXACT_MATCH_SCHEMA,
             "Generated texts: fraction equal to their reference (case, punctuation and "
             "spacing ignored by default)")
    register("seqeval", _metric_factory("seqeval"), SEQEVAL_SCHEMA,
             "token-classification: entity-level precision/recall/F1 (seqeval_f1, ...)")
