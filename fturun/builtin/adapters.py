"""Built-in parameter-efficient adapters through peft: LoRA (and DoRA/rsLoRA through its params),
LoHa, LoKr, IA3, prefix tuning, prompt tuning and P-tuning."""

from __future__ import annotations

from fturun.api import RecipeRuntimeError, hookimpl

TARGET_MODULES = {
    "description": "module names (or name suffixes) to adapt, e.g. [\"query\", \"value\"], or "
                   "\"all-linear\"",
    "anyOf": [
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        {"type": "string", "minLength": 1},
    ],
}
MODULES_TO_SAVE = {"type": "array", "items": {"type": "string"},
                   "description": "extra modules trained in full and saved (default: the "
                                  "classification head for classification tasks)"}

LORA_SCHEMA = {
    "type": "object",
    "properties": {
        "r": {"type": "integer", "minimum": 1, "default": 8},
        "lora_alpha": {"type": "number", "exclusiveMinimum": 0, "default": 8},
        "lora_dropout": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0},
        "target_modules": TARGET_MODULES,
        "bias": {"enum": ["none", "all", "lora_only"], "default": "none"},
        "use_dora": {"type": "boolean", "default": False},
        "use_rslora": {"type": "boolean", "default": False},
        "modules_to_save": MODULES_TO_SAVE,
    },
}
LOHA_LOKR_SCHEMA = {
    "type": "object",
    "properties": {
        "r": {"type": "integer", "minimum": 1, "default": 8},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "default": 8},
        "rank_dropout": {"type": "number", "minimum": 0, "maximum": 1},
        "module_dropout": {"type": "number", "minimum": 0, "maximum": 1},
        "target_modules": TARGET_MODULES,
        "modules_to_save": MODULES_TO_SAVE,
    },
}
IA3_SCHEMA = {
    "type": "object",
    "properties": {
        "target_modules": TARGET_MODULES,
        "feedforward_modules": TARGET_MODULES,
        "modules_to_save": MODULES_TO_SAVE,
    },
}
VIRTUAL_TOKENS = {"type": "integer", "minimum": 1, "default": 20}
PREFIX_SCHEMA = {
    "type": "object",
    "properties": {"num_virtual_tokens": VIRTUAL_TOKENS, "prefix_projection": {"type": "boolean"},
                   "encoder_hidden_size": {"type": "integer", "minimum": 1}},
}
PROMPT_SCHEMA = {
    "type": "object",
    "properties": {"num_virtual_tokens": VIRTUAL_TOKENS,
                   "prompt_tuning_init": {"enum": ["RANDOM", "TEXT"], "default": "RANDOM"},
                   "prompt_tuning_init_text": {"type": "string"}},
}
P_TUNING_SCHEMA = {
    "type": "object",
    "properties": {"num_virtual_tokens": VIRTUAL_TOKENS,
                   "encoder_hidden_size": {"type": "integer", "minimum": 1},
                   "encoder_reparameterization_type": {"enum": ["MLP", "LSTM"]}},
}


def count_parameters(model):
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _linear_module_suffixes(model):
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _takes_past_key_values(peft_model) -> bool:
    """Whether prefix tuning can feed its prefixes to this model (peft's own test, made before
    training instead of failing at the first step)."""
    import inspect

    def takes(module):
        return "past_key_values" in inspect.signature(module.forward).parameters

    base = peft_model.base_model
    if takes(base):
        return True
    backbone = getattr(peft_model, "transformer_backbone_name", None)
    return bool(backbone) and takes(base.get_submodule(backbone))


def new_token_rows(context, kwargs) -> dict:
    """LoRA settings that train the embedding rows of the tokens the chat template added
    (``context.added_token_ids``: new, random rows a frozen base would never train): peft's
    ``trainable_token_indices`` on the input embeddings, and on the output embeddings when they
    are not tied to them (the model must learn to write its end marker). Nothing when the recipe
    trains the embeddings itself (``modules_to_save``, ``trainable_token_indices``)."""
    model = context.model
    if kwargs.get("trainable_token_indices") or kwargs.get("modules_to_save"):
        return {}
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    ids = list(context.added_token_ids)
    rows = {names[id(inputs)]: ids}
    if outputs is not None and outputs.weight is not inputs.weight:
        rows[names[id(outputs)]] = ids
    context.log(f"adapter: the {len(ids)} tokens the chat template added are trained in "
                f"{' and '.join(rows)} (peft trainable_token_indices)")
    return {"trainable_token_indices": rows}


def is_quantized(model) -> bool:
    """Whether ``model`` was loaded 4/8-bit by bitsandbytes."""
    return bool(getattr(model, "is_loaded_in_4bit", False)
                or getattr(model, "is_loaded_in_8bit", False))


def prepare_quantized(context):
    """``context.model``, readied for training an adapter over quantized weights when it is
    quantized (peft's ``prepare_model_for_kbit_training``: norms in float32, input gradients
    on, gradient checkpointing as ``training.gradient_checkpointing`` says)."""
    model = context.model
    if not is_quantized(model):
        return model
    import peft

    checkpointing = bool(context.training_args.get("gradient_checkpointing", False))
    context.log(f"adapter: preparing the quantized model for training (gradient "
                f"checkpointing {'on' if checkpointing else 'off'})")
    return peft.prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None)


def _peft_factory(config_class, schema):
    # fturun hands factories the params with the schema's defaults filled in; they are applied
    # here too because peft leaves some of them unset (num_virtual_tokens is None in peft's
    # configs) and the factory is also called directly
    defaults = {key: prop["default"] for key, prop in schema["properties"].items()
                if "default" in prop}

    def build(params, context):
        """Wrap ``context.model`` with the peft adapter; errors name the params to fix."""
        import peft

        kwargs = {**defaults, **params}
        task_type = context.task_record.peft_task_type
        if task_type:
            kwargs["task_type"] = task_type
        if config_class == "PromptTuningConfig" and kwargs.get("prompt_tuning_init") == "TEXT":
            kwargs["tokenizer_name_or_path"] = context.tokenizer.name_or_path
        if config_class == "LoraConfig" and context.added_token_ids:
            kwargs.update(new_token_rows(context, kwargs))
        try:
            config = getattr(peft, config_class)(**kwargs)
            model = peft.get_peft_model(prepare_quantized(context), config)
        except (ValueError, TypeError) as exc:
            text = str(exc)
            if ("not found in the base model" in text or "Target module" in text
                    or "No modules were targeted" in text):
                text = (f"adapter.params.target_modules {params.get('target_modules')} match no "
                        f"module of the model; its linear modules are: "
                        f"{', '.join(_linear_module_suffixes(context.model))}")
            raise RecipeRuntimeError(f"cannot build adapter: {text}") from None
        if config_class == "PrefixTuningConfig" and not _takes_past_key_values(model):
            raise RecipeRuntimeError(
                f"adapter 'prefix_tuning' needs a model that takes past_key_values, and "
                f"{type(context.model).__name__} does not (in this transformers version); use "
                "'prompt_tuning', 'p_tuning' or 'lora' instead")
        trainable, total = count_parameters(model)
        context.log(f"adapter: {trainable:,} trainable of {total:,} parameters "
                    f"({100 * trainable / total:.2f}%)")
        return model

    return build


@hookimpl
def fturun_register_adapters(register):
    """The built-in peft adapters."""
    register("lora", _peft_factory("LoraConfig", LORA_SCHEMA), LORA_SCHEMA,
             "LoRA low-rank adapters (use_dora / use_rslora for DoRA and rsLoRA)")
    register("loha", _peft_factory("LoHaConfig", LOHA_LOKR_SCHEMA), LOHA_LOKR_SCHEMA,
             "LoHa: low-rank Hadamard product adapters")
    register("lokr", _peft_factory("LoKrConfig", LOHA_LOKR_SCHEMA), LOHA_LOKR_SCHEMA,
             "LoKr: low-rank Kronecker product adapters")
    register("ia3", _peft_factory("IA3Config", IA3_SCHEMA), IA3_SCHEMA,
             "IA3: learned rescaling of activations")
    register("prefix_tuning", _peft_factory("PrefixTuningConfig", PREFIX_SCHEMA), PREFIX_SCHEMA,
             "Prefix tuning: trainable key/value prefixes in every layer")
    register("prompt_tuning", _peft_factory("PromptTuningConfig", PROMPT_SCHEMA), PROMPT_SCHEMA,
             "Prompt tuning: trainable soft prompt tokens")
    register("p_tuning", _peft_factory("PromptEncoderConfig", P_TUNING_SCHEMA), P_TUNING_SCHEMA,
             "P-tuning: soft prompt tokens from a small prompt encoder")
