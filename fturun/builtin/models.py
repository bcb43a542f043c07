"""Built-in model loaders: a pretrained model (local path, package path or Hub name), or a new model
built from a config for training from scratch. The auto class is the task's ``model_class``."""

from __future__ import annotations

import os

from fturun.api import RecipeRuntimeError, hookimpl, hub_unreachable_message

DTYPES = ["auto", "float32", "float16", "bfloat16"]

PRETRAINED_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "minLength": 1,
                 "description": "a local folder, 'package:NAME/sub/path', or a Hub name"},
        "tokenizer": {"type": "string", "minLength": 1,
                      "description": "where the tokenizer is (default: path)"},
        "revision": {"type": "string"},
        "dtype": {"enum": DTYPES, "default": "float32"},
        "trust_remote_code": {"type": "boolean", "default": False,
                              "description": "run Python code shipped with the model; only "
                                             "for models you trust (flagged in the run's tags)"},
        "ignore_mismatched_sizes": {"type": "boolean", "default": False},
        "attn_implementation": {"type": "string", "minLength": 1,
                                "description": "'sdpa' (default where supported), 'eager', "
                                               "'flash_attention_2', ..."},
        "allow_pickle": {"type": "boolean", "default": False,
                         "description": "allow loading pickle-based weights (.bin); "
                                        "safetensors only by default"},
    },
}

FROM_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["tokenizer", "config"],
    "properties": {
        "tokenizer": {"type": "string", "minLength": 1,
                      "description": "a tokenizer folder, 'package:...' path, or Hub name"},
        "attn_implementation": {"type": "string", "minLength": 1,
                                "description": "'sdpa' (default where supported), 'eager', "
                                               "'flash_attention_2', ..."},
        "config": {
            "description": "a config folder/file, or an object with 'model_type' and the "
                           "config fields to set (e.g. n_layer, hidden_size)",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "object", "required": ["model_type"],
                 "properties": {"model_type": {"type": "string"}}},
            ],
        },
    },
}


def _auto_class(context):
    """The transformers auto class of the run's task (``Task.model_class``)."""
    import transformers

    return getattr(transformers, context.task_record.model_class)


def _locate(context, path, what):
    """A local path when it exists, else the name as given (a Hub name), checked for
    reachability."""
    resolved = context.resolve_path(path)
    if os.path.exists(resolved):
        return resolved
    if path.startswith(("package:", ".", "/", "~")) or path.count("/") > 1:
        raise RecipeRuntimeError(f"{what} path '{path}' does not exist (looked for {resolved})")
    message = hub_unreachable_message("model", path)
    if message:
        raise RecipeRuntimeError(message)
    return path


def load_tokenizer(context, path, trust_remote_code=False, revision=None):
    """A tokenizer from a path or Hub name; a pad token is set if the tokenizer has none."""
    from transformers import AutoTokenizer

    location = _locate(context, path, "tokenizer")
    kwargs = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_pretrained(params, context):
    """``(model, tokenizer)`` for a pretrained checkpoint, with ``context.model_kwargs``
    (``num_labels``, ``id2label``, ``label2id``) passed on."""
    import torch

    location = _locate(context, params["path"], "model")
    trust = params.get("trust_remote_code", False)
    tokenizer = load_tokenizer(context, params.get("tokenizer", params["path"]), trust,
                               params.get("revision"))
    kwargs = dict(context.model_kwargs)
    kwargs["trust_remote_code"] = trust
    if params.get("revision"):
        kwargs["revision"] = params["revision"]
    dtype = params.get("dtype", "float32")
    kwargs["dtype"] = "auto" if dtype == "auto" else getattr(torch, dtype)
    if params.get("ignore_mismatched_sizes"):
        kwargs["ignore_mismatched_sizes"] = True
    if params.get("attn_implementation"):
        kwargs["attn_implementation"] = params["attn_implementation"]
    if not params.get("allow_pickle", False):
        kwargs["use_safetensors"] = True
    try:
        model = _auto_class(context).from_pretrained(location, **kwargs)
    except OSError as exc:
        text = str(exc)
        if "safetensors" in text or "model.safetensors" in text:
            raise RecipeRuntimeError(
                f"model '{params['path']}' has no safetensors weights; pickle-based weights "
                "(.bin) can run code when loaded: set model.params.allow_pickle=true only if "
                "you trust this checkpoint") from None
        raise RecipeRuntimeError(f"cannot load model '{params['path']}': {text}") from None
    return _with_loss_type(model, context), tokenizer


def build_from_config(params, context):
    """``(model, tokenizer)`` for a new, randomly initialised model built from a config."""
    from transformers import AutoConfig

    tokenizer = load_tokenizer(context, params["tokenizer"])
    config_ref = params["config"]
    if isinstance(config_ref, str):
        config = AutoConfig.from_pretrained(_locate(context, config_ref, "config"))
    else:
        fields = dict(config_ref)
        model_type = fields.pop("model_type")
        try:
            config = AutoConfig.for_model(model_type, **fields)
        except ValueError as exc:
            raise RecipeRuntimeError(f"model.params.config: {exc}") from None
    config.vocab_size = len(tokenizer)
    for key, value in context.model_kwargs.items():
        setattr(config, key, value)
    special = special_token_ids(tokenizer)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        # the tokenizer's ids, not the config class's defaults (GPT-2's 50256 is not in a
        # BERT vocabulary); a generator stops at eos
        setattr(config, attr, special[attr])
    if context.task_record.model_class == "AutoModelForSeq2SeqLM":  # an encoder-decoder
        config.decoder_start_token_id = special["bos_token_id"] \
            if special["bos_token_id"] is not None else special["pad_token_id"]
    kwargs = {}
    if params.get("attn_implementation"):
        kwargs["attn_implementation"] = params["attn_implementation"]
    try:
        model = _auto_class(context).from_config(config, **kwargs)
    except (ValueError, ImportError) as exc:
        raise RecipeRuntimeError(f"model.params: cannot build a {config.model_type} model for "
                                 f"task '{context.task}': {exc}") from None
    return _with_loss_type(model, context), tokenizer


def _with_loss_type(model, context):
    """A causal LM whose class name gives transformers no loss type (``GPT2LMHeadModel``) is
    given the causal-LM loss it would fall back to, without the ``loss_type=None ...
    unrecognized`` warning at its first step."""
    if context.task_record.model_class == "AutoModelForCausalLM" and \
            getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model


def special_token_ids(tokenizer) -> dict:
    """pad/bos/eos ids for a model built around ``tokenizer``. A BERT-style tokenizer has no
    bos/eos: its ``[CLS]`` starts and its ``[SEP]`` ends a sequence, so they stand in."""
    pad = tokenizer.pad_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return {"pad_token_id": pad, "bos_token_id": bos, "eos_token_id": eos}


@hookimpl
def fturun_register_models(register):
    """The built-in model loaders."""
    register("pretrained", load_pretrained, PRETRAINED_SCHEMA,
             "A pretrained model (local folder, package path or Hub name), auto class by task")
    register("from_config", build_from_config, FROM_CONFIG_SCHEMA,
             "A new model from a config (train from scratch), with an existing tokenizer")
