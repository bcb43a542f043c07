"""Built-in data collators: dynamic padding, language modeling (masked or causal), seq2seq and token
classification, all from transformers and built with the run's tokenizer."""

from __future__ import annotations

from fturun.hookspecs import hookimpl

PAD_TO_MULTIPLE_OF = {"type": "integer", "minimum": 1,
                      "description": "pad lengths up to a multiple of this (8 helps tensor cores)"}
LABEL_PAD = {"type": "integer", "default": -100,
             "description": "label id for padding (ignored by the loss)"}

PADDING_SCHEMA = {"type": "object", "properties": {"pad_to_multiple_of": PAD_TO_MULTIPLE_OF}}
LM_SCHEMA = {
    "type": "object",
    "properties": {
        "mlm": {"type": "boolean", "default": True,
                "description": "masked LM (true) or causal LM (false)"},
        "mlm_probability": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                            "default": 0.15},
        "pad_to_multiple_of": PAD_TO_MULTIPLE_OF,
    },
}
SEQ2SEQ_SCHEMA = {"type": "object", "properties": {"label_pad_token_id": LABEL_PAD,
                                                   "pad_to_multiple_of": PAD_TO_MULTIPLE_OF}}
TOKEN_CLS_SCHEMA = SEQ2SEQ_SCHEMA


def padding(params, context):
    """Pad each batch to its longest example."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(context.tokenizer,
                                   pad_to_multiple_of=params.get("pad_to_multiple_of"))


def language_modeling(params, context):
    """Masked LM (random masking) or causal LM (labels = inputs) batches."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        context.tokenizer, mlm=params.get("mlm", True),
        mlm_probability=params.get("mlm_probability", 0.15),
        pad_to_multiple_of=params.get("pad_to_multiple_of"), seed=context.seed)


def seq2seq(params, context):
    """Pad inputs and labels separately (labels with -100); decoder inputs from the model."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(context.tokenizer, model=context.model,
                                  label_pad_token_id=params.get("label_pad_token_id", -100),
                                  pad_to_multiple_of=params.get("pad_to_multiple_of"))


def token_classification(params, context):
    """Pad inputs and per-token labels (labels with -100)."""
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(
        context.tokenizer, label_pad_token_id=params.get("label_pad_token_id", -100),
        pad_to_multiple_of=params.get("pad_to_multiple_of"))


@hookimpl
def fturun_register_collators(register):
    """The built-in collators."""
    register("padding", padding, PADDING_SCHEMA, "Dynamic padding to the longest example in a batch")
    register("language_modeling", language_modeling, LM_SCHEMA,
             "Masked LM (mlm_probability) or causal LM (mlm=false) batches")
    register("seq2seq", seq2seq, SEQ2SEQ_SCHEMA, "Encoder-decoder batches with padded labels")
    register("token_classification", token_classification, TOKEN_CLS_SCHEMA,
             "Token-classification batches with padded per-token labels")
