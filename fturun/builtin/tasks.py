"""Built-in tasks: one :class:`~fturun.api.Task` record each, registered through
``fturun_register_tasks`` like a plugin's. Adding a task is one more record here (or in a
plugin), with its implementation in a module of its own."""

from __future__ import annotations

from fturun.api import Task, hookimpl

from . import task_answers, task_classification, task_language_model, task_seq2seq, task_tokens

SEQUENCE_CLASSIFICATION = Task(
    name="sequence-classification",
    description="One label per text or text pair (topics, sentiment, entailment)",
    model_class="AutoModelForSequenceClassification",
    pipeline_task="text-classification",
    peft_task_type="SEQ_CLS",
    default_collator="padding",
    labels="classes",
    prepare=task_classification.prepare,
    tokenize=task_classification.tokenize,
    metric_inputs=task_classification.metric_inputs,
    write_predictions=task_classification.write_predictions,
)

TOKEN_CLASSIFICATION = Task(
    name="token-classification",
    description="One tag per word (named entities, parts of speech)",
    model_class="AutoModelForTokenClassification",
    pipeline_task="token-classification",
    peft_task_type="TOKEN_CLS",
    default_collator="token_classification",
    default_metrics=("seqeval",),
    data_keys={"label_all_tokens"},
    argmax_logits=True,
    labels="tags",
    prepare=task_tokens.prepare,
    tokenize=task_tokens.tokenize,
    metric_inputs=task_tokens.metric_inputs,
    write_predictions=task_tokens.write_predictions,
)

MASKED_LM = Task(
    name="masked-lm",
    description="Masked language modelling: predict masked tokens (domain adaptation)",
    model_class="AutoModelForMaskedLM",
    pipeline_task="fill-mask",
    default_collator={"name": "language_modeling", "params": {"mlm": True}},
    always_metrics=("perplexity",),
    data_keys={"block_size"},
    argmax_logits=True,
    tokenize=task_language_model.tokenize_masked,
    metric_inputs=task_language_model.metric_inputs,
)

CAUSAL_LM = Task(
    name="causal-lm",
    description="Causal language modelling: predict the next token (text generation)",
    model_class="AutoModelForCausalLM",
    pipeline_task="text-generation",
    peft_task_type="CAUSAL_LM",
    default_collator={"name": "language_modeling", "params": {"mlm": False}},
    packed_collator="packing",
    always_metrics=("perplexity",),
    data_keys={"block_size", "packing", "format", "chat_template", "train_on",
               "fold_system"},
    generates=True,
    mean_loss=False,  # the loss honours num_items_in_batch
    argmax_logits=True,
    tokenize=task_language_model.tokenize_causal,
    metric_inputs=task_language_model.metric_inputs_causal,
    generate_samples=task_language_model.generate_samples,
    answer_prompts=task_answers.answer_prompts,
    generation_metrics=task_answers.GENERATION_METRICS,
)

SEQ2SEQ = Task(
    name="seq2seq",
    description="Text to target text with an encoder-decoder (summaries, translation)",
    model_class="AutoModelForSeq2SeqLM",
    pipeline_task="text2text-generation",
    peft_task_type="SEQ_2_SEQ_LM",
    trainer="seq2seq",
    default_collator="seq2seq",
    default_metrics=("rouge", "bleu"),
    data_keys={"max_target_length"},
    generates=True,
    target=True,
    tokenize=task_seq2seq.tokenize,
    metric_inputs=task_seq2seq.metric_inputs,
    write_predictions=task_seq2seq.write_predictions,
    generate_samples=task_seq2seq.generate_samples,
)

TASKS = (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, MASKED_LM, CAUSAL_LM, SEQ2SEQ)


@hookimpl
def fturun_register_tasks(register):
    """The built-in tasks."""
    for task in TASKS:
        register(task)
