"""Exact parameter counts of the model a recipe would build, from its config: the task's auto
class built on the meta device (no weight read, no memory taken), the recipe's peft adapter
applied as the adapter component applies it, every parameter counted by what it is. A census is
cached by a digest of everything it depends on (``$XDG_CACHE_HOME/fturun/plan``), so a second
plan of the same model needs neither torch nor transformers."""

from __future__ import annotations

import hashlib
import json
import os

from ..recipe.refs import component_ref
from .model_config import ConfigSource, PlanError

CENSUS_VERSION = 5
#: adapter name -> peft config class (the built-in adapters, :mod:`fturun.builtin.adapters`)
PEFT_CONFIGS = {"lora": "LoraConfig", "loha": "LoHaConfig", "lokr": "LoKrConfig",
                "ia3": "IA3Config", "prefix_tuning": "PrefixTuningConfig",
                "prompt_tuning": "PromptTuningConfig", "p_tuning": "PromptEncoderConfig"}


def cache_dir() -> str:
    """Where censuses are kept (``FTURUN_PLAN_CACHE``, else the user's cache folder)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("FTURUN_PLAN_CACHE") or os.path.join(root, "fturun", "plan")


def census_key(source: ConfigSource, model_class: str, model_kwargs: dict, adapter,
               peft_task_type, skip_modules) -> str:
    """A digest of what the counts depend on: config fields, tokenizer files, auto class,
    labels, adapter and the library versions."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    tokenizer = None
    if source.tokenizer:
        tokenizer = sorted((f, os.path.getsize(os.path.join(source.tokenizer, f)))
                           for f in os.listdir(source.tokenizer)
                           if f.startswith(("tokenizer", "vocab", "special", "added", "merges")))
    blob = json.dumps([CENSUS_VERSION, source.fields, tokenizer, model_class, model_kwargs,
                       adapter, peft_task_type, skip_modules, installed("transformers"),
                       installed("peft")], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def take_census(source: ConfigSource, model_class: str, model_kwargs: dict | None = None,
                adapter=None, peft_task_type=None, skip_modules=(), attn=None) -> dict:
    """The census (see :func:`count_model`) of the recipe's model, from the cache or built."""
    model_kwargs = dict(model_kwargs or {})
    key = census_key(source, model_class, model_kwargs, adapter, peft_task_type,
                     list(skip_modules))
    file = os.path.join(cache_dir(), f"{key}.json")
    try:
        with open(file, encoding="utf-8") as handle:
            return {**json.load(handle), "cached": True}
    except (OSError, ValueError):
        pass
    model = meta_model(source, model_class, model_kwargs, attn)
    if adapter is not None:
        model = apply_adapter(model, adapter, peft_task_type)
    census = count_model(model, skip_modules)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        with open(file + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(census, handle)
        os.replace(file + ".tmp", file)
    except OSError:
        pass  # a read-only home: the plan is made all the same
    return {**census, "cached": False}


def meta_model(source: ConfigSource, model_class: str, model_kwargs: dict, attn=None):
    """The task's auto class built from the config on the meta device."""
    import torch
    import transformers

    config = _config(source, model_kwargs)
    kwargs = {"attn_implementation": attn} if attn else {}
    try:
        with torch.device("meta"):
            return getattr(transformers, model_class).from_config(config, **kwargs)
    except (ValueError, ImportError, KeyError) as exc:
        raise PlanError(f"$.model: cannot build a {config.model_type} model with "
                        f"{model_class} from its config: {exc}") from None


def _config(source: ConfigSource, model_kwargs: dict):
    from transformers import AutoConfig

    fields = dict(source.fields)
    try:
        if source.folder and not source.tokenizer:
            return AutoConfig.from_pretrained(source.folder, **model_kwargs)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    except (ValueError, OSError, TypeError) as exc:
        raise PlanError(f"$.model: the config of '{source.where}' cannot be read: {exc}") \
            from None
    if source.tokenizer:  # from_config sizes the vocabulary to the tokenizer
        from transformers import AutoTokenizer

        config.vocab_size = len(AutoTokenizer.from_pretrained(source.tokenizer))
    for key, value in model_kwargs.items():
        setattr(config, key, value)
    return config


def apply_adapter(model, adapter, peft_task_type):
    """``model`` wrapped in the recipe's peft adapter (``{"name", "params"}``, the params with
    their schema's defaults), as the adapter component wraps it."""
    import peft
    import torch

    name, params = component_ref(adapter)
    if name not in PEFT_CONFIGS:
        raise PlanError(f"$.adapter: '{name}' is a plugin's adapter; the planner counts the "
                        f"built-in ones ({', '.join(PEFT_CONFIGS)})")
    kwargs = dict(params)  # the schema's defaults filled in by the caller, as for the factory
    if peft_task_type:
        kwargs["task_type"] = peft_task_type
    kwargs.pop("prompt_tuning_init_text", None)
    kwargs["prompt_tuning_init"] = "RANDOM" if name == "prompt_tuning" else None
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        with torch.device("meta"):
            return peft.get_peft_model(model, getattr(peft, PEFT_CONFIGS[name])(**kwargs))
    except (ValueError, TypeError) as exc:
        raise PlanError(f"$.adapter.params: cannot build the adapter on this model: {exc}") \
            from None


def count_model(model, skip_modules=()) -> dict:
    """Counts by kind: ``total`` and ``trainable`` parameters; ``embedding`` (lookups);
    ``matmul`` (linear weights: 2 FLOPs per token forward); ``quantizable`` (the linear weights
    bitsandbytes would quantize: not the output head, nor ``skip_modules``); ``adafactor``
    (the factored second moment's elements of the trainable ones); ``saved_inputs`` (features a
    token's trainable linears keep for their weight gradient) and ``adapter_dropout`` (features
    an adapter's dropout masks)."""
    import torch

    counts = dict.fromkeys(("total", "trainable", "embedding", "matmul", "trainable_matmul",
                            "head_matmul", "quantizable", "adafactor", "saved_inputs",
                            "adapter_dropout"), 0)
    seen = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        counts["total"] += param.numel()
        if param.requires_grad:
            counts["trainable"] += param.numel()
            counts["adafactor"] += sum(param.shape) if param.dim() == 2 else param.numel()
    head = _output_head(model)
    skip = ("lm_head", "classifier", "score", "modules_to_save", *skip_modules)
    saved = {}  # one saved input per tensor: q, k and v (gate and up) share theirs
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Embedding):
            counts["embedding"] += module.weight.numel()
        if not isinstance(module, torch.nn.Linear) or weight is None:
            continue
        counts["matmul"] += weight.numel()
        if module is head:  # outside the layers: not recomputed under gradient checkpointing
            counts["head_matmul"] += weight.numel()
        dropped = name.endswith("lora_A.default") and _adapter_dropout(model, name)
        if weight.requires_grad:
            counts["trainable_matmul"] += weight.numel()
            saved[_input_key(name, module, dropped)] = module.in_features
        if module is not head and "lora_" not in name and \
                not any(part in name.split(".") for part in skip):
            counts["quantizable"] += weight.numel()
        if dropped:
            counts["adapter_dropout"] += module.in_features
    counts["saved_inputs"] = sum(saved.values())
    config = getattr(model, "config", None)  # from_config sizes the vocabulary to a tokenizer
    counts["vocab"] = int(getattr(config, "vocab_size", 0) or 0)
    return counts


#: linear layers that read the same input tensor, by their last name
SHARED_INPUT = {name: "qkv" for name in ("query", "key", "value", "q_proj", "k_proj", "v_proj",
                                         "q", "k", "v", "c_attn", "qkv_proj", "Wqkv")}
SHARED_INPUT.update({name: "gate_up" for name in ("gate_proj", "up_proj", "w1", "w3", "wi_0",
                                                  "wi_1", "gate_up_proj")})


def _input_key(name: str, module, dropped: bool) -> tuple:
    """Which input tensor a linear saves: an adapter's dropout output is its own; a LoRA A
    without dropout reads its base layer's input; q, k, v (gate, up) of a block read one."""
    if dropped:
        return (name,)
    if ".lora_A." in name:
        name = name.split(".lora_A.")[0]
    elif ".lora_" in name:
        return (name,)
    parent, _, leaf = name.rpartition(".")
    if leaf == "base_layer":
        parent, _, leaf = parent.rpartition(".")
    return (parent, module.in_features, SHARED_INPUT.get(leaf, leaf))


def _adapter_dropout(model, name: str) -> bool:
    import torch

    parent = model.get_submodule(name.rsplit(".lora_A", 1)[0])
    dropouts = getattr(parent, "lora_dropout", None)
    dropout = dropouts["default"] if dropouts is not None and "default" in dropouts else None
    return dropout is not None and not isinstance(dropout, torch.nn.Identity)


def _output_head(model):
    try:
        return model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
