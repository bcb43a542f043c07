"""Built-in data collators: dynamic padding, language modeling (masked or causal), seq2seq, token
classification and causal-LM packing, all from transformers and built with the run's tokenizer."""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, hookimpl

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
    """Masked LM (random masking) or causal LM (labels = inputs) batches. Masked LM masks
    training batches afresh each time, but evaluation batches the same way every time (see
    :class:`StableEvalMasking`), so eval loss and perplexity compare across evaluations. Causal
    LM rows that carry their own labels (conversations: completion-only masks) keep them,
    padded with -100."""
    from transformers import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

    rows = context.train_dataset
    if not params.get("mlm", True) and rows is not None and "labels" in rows.column_names:
        return DataCollatorForSeq2Seq(context.tokenizer, label_pad_token_id=-100,
                                      pad_to_multiple_of=params.get("pad_to_multiple_of"))
    collator = DataCollatorForLanguageModeling(
        context.tokenizer, mlm=params.get("mlm", True),
        mlm_probability=params.get("mlm_probability", 0.15),
        pad_to_multiple_of=params.get("pad_to_multiple_of"), seed=context.seed)
    if collator.mlm and context.model is not None:
        return StableEvalMasking(collator, context.model, context.seed)
    return collator


class StableEvalMasking:
    """A masked-LM collator whose masks are a function of the batch while the model is in eval
    mode (the Trainer evaluates in eval mode): the random generator is seeded from the batch's
    token ids, so each evaluation scores the same masked positions, while training batches are
    masked afresh from the collator's seeded generator."""

    def __init__(self, collator, model, seed):
        self.collator = collator
        self.model = model
        self.seed = int(seed)

    def __call__(self, features, return_tensors=None):
        import os
        import zlib

        import torch

        if self.model.training:
            return self.collator(features, return_tensors)
        collator = self.collator
        key = zlib.crc32(repr([list(f["input_ids"]) for f in features]).encode())
        saved = collator.generator, collator._generator_pid
        collator.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + key)
        collator._generator_pid = os.getpid()
        try:
            return collator(features, return_tensors)
        finally:
            collator.generator, collator._generator_pid = saved

    def __getattr__(self, name):
        if name in ("collator", "model", "seed"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.collator, name)


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


PACKING_SCHEMA = {"type": "object", "properties": {
    "check": {"type": "boolean", "default": True,
              "description": "before training, check on a tiny input that the model keeps "
                             "packed examples apart (a packed forward equals the separate "
                             "ones); refuse the model otherwise"}}}


def packing(params, context):
    """Padding-free causal LM batches: a batch's examples are concatenated into one row, with
    ``position_ids`` restarting at 0 for each example, so a model that derives its attention
    mask from the position ids (transformers' ``create_causal_mask``: GPT-2, Llama, Qwen,
    Mistral, ... with ``sdpa``, ``eager`` or flash attention) attends within each example
    only. The first label of each example is -100: nothing predicts across a boundary."""
    from transformers import DataCollatorWithFlattening

    if "packing" not in context.task_record.data_keys:
        raise RecipeRuntimeError(f"collator 'packing' is for a task that packs its rows "
                                 f"(data.packing: causal-lm), not '{context.task}'")
    model = context.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is not None and getattr(config, "use_cache", False):
        # a key/value cache in training turns off the packed-sequence mask: no cache in
        # training (generation asks for one explicitly)
        config.use_cache = False
    if params.get("check", True) and model is not None:
        check_packing(model)
    return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)


def check_packing(model, tolerance: float = 1e-3) -> None:
    """Raise :class:`RecipeRuntimeError` unless ``model`` gives two sequences packed into one
    row (position ids restarting) the same logits as each sequence alone."""
    import torch

    vocab = model.get_input_embeddings().weight.shape[0]
    first = torch.tensor([[3, 5, 7, 9]]) % vocab
    second = torch.tensor([[4, 6, 8]]) % vocab
    packed = torch.cat([first, second], dim=1)
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2]])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            together = model(input_ids=packed.to(device), position_ids=positions.to(device),
                             use_cache=False).logits[0].float()
            alone = torch.cat([model(input_ids=x.to(device), use_cache=False).logits[0].float()
                               for x in (first, second)])
    except TypeError as exc:
        raise RecipeRuntimeError(
            f"collator 'packing': {type(model).__name__} does not take position_ids ({exc}); "
            "use data.block_size (fixed-length blocks) instead of data.packing") from None
    finally:
        model.train(was_training)
    difference = (together - alone).abs().max().item()
    if difference > tolerance:
        raise RecipeRuntimeError(
            f"collator 'packing': {type(model).__name__} "
            f"(attn_implementation "
            f"'{getattr(getattr(model, 'config', None), '_attn_implementation', '?')}') "
            f"lets packed examples attend to each other (logits differ by {difference:.3g}); "
            "use data.block_size (fixed-length blocks) or padding (no data.packing), or a "
            "model whose attention follows position_ids")


@hookimpl
def fturun_register_collators(register):
    """The built-in collators."""
    register("padding", padding, PADDING_SCHEMA,
             "Dynamic padding to the longest example in a batch")
    register("language_modeling", language_modeling, LM_SCHEMA,
             "Masked LM (mlm_probability) or causal LM (mlm=false) batches")
    register("seq2seq", seq2seq, SEQ2SEQ_SCHEMA, "Encoder-decoder batches with padded labels")
    register("token_classification", token_classification, TOKEN_CLS_SCHEMA,
             "Token-classification batches with padded per-token labels")
    register("packing", packing, PACKING_SCHEMA,
             "Causal LM: a batch's examples packed into one row, no attention across them")
