"""Built-in model loaders: a pretrained model (local path, package path or Hub name), or a new model
built from a config for training from scratch. The auto class is the task's ``model_class``."""

from __future__ import annotations

import os

from fturun.api import (
    RecipeRuntimeError,
    hookimpl,
    hub_unreachable_message,
    prepare_chat_tokenizer,
    suggest,
)

DTYPES = ["auto", "float32", "float16", "bfloat16"]
FLOAT_DTYPES = ["float32", "float16", "bfloat16"]

QUANTIZATION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "load the base model quantized by bitsandbytes (QLoRA; needs a CUDA GPU, "
                   "bitsandbytes and an adapter)",
    "properties": {
        "bits": {"enum": [4, 8], "default": 4},
        "quant_type": {"enum": ["nf4", "fp4"], "default": "nf4",
                       "description": "4-bit data type (bnb_4bit_quant_type)"},
        "compute_dtype": {"enum": FLOAT_DTYPES, "default": "bfloat16",
                          "description": "dtype of the 4-bit matmuls (bnb_4bit_compute_dtype); "
                                         "output.merge_adapter reloads the base in it"},
        "double_quant": {"type": "boolean", "default": True,
                         "description": "quantize the quantization constants too "
                                        "(bnb_4bit_use_double_quant)"},
        "storage_dtype": {"enum": ["uint8", *FLOAT_DTYPES],
                          "description": "dtype the 4-bit weights are packed in "
                                         "(bnb_4bit_quant_storage); under FSDP the same as "
                                         "model.params.dtype"},
        "skip_modules": {"type": "array", "items": {"type": "string", "minLength": 1},
                         "description": "modules left unquantized (llm_int8_skip_modules), "
                                        "e.g. a classification head"},
    },
}
CONFIG_OVERRIDES_SCHEMA = {
    "type": "object",
    "description": "model config fields set before the weights load, e.g. {\"rope_scaling\": "
                   "{\"rope_type\": \"linear\", \"factor\": 2.0}, "
                   "\"max_position_embeddings\": 4096, \"hidden_dropout_prob\": 0.2}",
}

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
        "quantization": QUANTIZATION_SCHEMA,
        "config_overrides": CONFIG_OVERRIDES_SCHEMA,
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
    """A tokenizer from a path or Hub name; a pad token is set if the tokenizer has none. For
    conversation rows (``data.format``) the run's chat template is set on it before any model
    loads (:func:`~fturun.api.prepare_chat_tokenizer`: no template is an error here)."""
    from transformers import AutoTokenizer

    location = _locate(context, path, "tokenizer")
    kwargs = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    prepare_chat_tokenizer(tokenizer, context.recipe, context.recipe_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def quantization_config(quant: dict):
    """The ``BitsAndBytesConfig`` of a ``model.params.quantization`` object (defaults: 4-bit
    NF4, bfloat16 compute, double quantization)."""
    import torch
    from transformers import BitsAndBytesConfig

    defaults = {k: v["default"] for k, v in QUANTIZATION_SCHEMA["properties"].items()
                if "default" in v}
    quant = {**defaults, **quant}
    kwargs = {"llm_int8_skip_modules": quant.get("skip_modules")}
    if quant["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True, **kwargs)
    storage = quant.get("storage_dtype")
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=quant["quant_type"],
        bnb_4bit_compute_dtype=getattr(torch, quant["compute_dtype"]),
        bnb_4bit_use_double_quant=quant["double_quant"],
        bnb_4bit_quant_storage=getattr(torch, storage) if storage else None, **kwargs)


def quantized_device_map() -> dict:
    """Every quantized module on this process's GPU: ``LOCAL_RANK`` under a launcher, else 0
    (bitsandbytes quantizes while loading, so the weights must land on the right GPU)."""
    return {"": int(os.environ.get("LOCAL_RANK", "0") or 0)}


def load_config(location, params, context):
    """The model's config with ``context.model_kwargs`` (labels) and
    ``params.config_overrides`` applied, before any weight loads. ``rope_scaling`` is merged
    into the config's rope parameters (``rope_theta`` kept); a key the config does not have is
    refused with the closest one."""
    from transformers import AutoConfig

    kwargs = {"trust_remote_code": params.get("trust_remote_code", False)}
    if params.get("revision"):
        kwargs["revision"] = params["revision"]
    config = AutoConfig.from_pretrained(location, **kwargs, **context.model_kwargs)
    known = set(config.to_dict()) | {"rope_scaling", "rope_parameters"}
    for key, value in (params.get("config_overrides") or {}).items():
        if key not in known:
            raise RecipeRuntimeError(
                f"model.params.config_overrides.{key}: {type(config).__name__} has no field "
                f"'{key}'{suggest(key, sorted(known))}")
        if key in ("rope_scaling", "rope_parameters") and isinstance(value, dict) and \
                hasattr(config, "rope_parameters"):
            value = {**(config.rope_parameters or {}), **value}
            key = "rope_parameters"
        try:
            setattr(config, key, value)
        except Exception as exc:  # noqa: BLE001 - the config class's own type check
            raise RecipeRuntimeError(f"model.params.config_overrides.{key}: {exc}") from None
    if params.get("config_overrides") and hasattr(config, "validate_rope"):
        try:
            config.validate_rope()
        except (ValueError, KeyError, TypeError) as exc:
            raise RecipeRuntimeError(f"model.params.config_overrides: {exc}") from None
    return config


def pretrained_kwargs(location, params, context) -> dict:
    """``from_pretrained`` keyword arguments of the ``pretrained`` params: the config (labels
    and overrides applied), dtype, quantization and device map, attention, safetensors."""
    import torch

    kwargs = {"config": load_config(location, params, context),
              "trust_remote_code": params.get("trust_remote_code", False)}
    if params.get("revision"):
        kwargs["revision"] = params["revision"]
    dtype = params.get("dtype", "float32")
    kwargs["dtype"] = "auto" if dtype == "auto" else getattr(torch, dtype)
    if params.get("quantization") is not None:
        kwargs["quantization_config"] = quantization_config(params["quantization"])
        kwargs["device_map"] = quantized_device_map()
    if params.get("ignore_mismatched_sizes"):
        kwargs["ignore_mismatched_sizes"] = True
    if params.get("attn_implementation"):
        kwargs["attn_implementation"] = params["attn_implementation"]
    if not params.get("allow_pickle", False):
        kwargs["use_safetensors"] = True
    return kwargs


def load_pretrained(params, context):
    """``(model, tokenizer)`` for a pretrained checkpoint, with ``context.model_kwargs``
    (``num_labels``, ``id2label``, ``label2id``) and ``config_overrides`` in its config."""
    location = _locate(context, params["path"], "model")
    tokenizer = load_pretrained.load_tokenizer(params, context)
    try:
        kwargs = pretrained_kwargs(location, params, context)
        model = _auto_class(context).from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:  # ValueError: an attention it does not support, ...
        text = str(exc)
        if isinstance(exc, OSError) and "safetensors" in text:
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


load_pretrained.load_tokenizer = lambda p, context: load_tokenizer(context, p.get(  # alone
    "tokenizer", p["path"]), p.get("trust_remote_code", False), p.get("revision"))
build_from_config.load_tokenizer = lambda p, context: load_tokenizer(context, p["tokenizer"])


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
