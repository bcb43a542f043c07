"""The ``training.fsdp`` / ``training.fsdp_config`` schemas as the installed transformers really
takes them, for :mod:`fturun.schema.generate`. The dataclass types say less than
``TrainingArguments`` accepts (``fsdp: str | None``, though ``True`` and the list form are
documented and taken) and nothing about ``fsdp_config``'s keys: both are written here from the
installed transformers' ``FSDPOption`` and accelerate's FSDP constants, the keys
``TrainingArguments._process_fsdp_args`` reads (each also written ``fsdp_<key>``)."""

from __future__ import annotations

import re


def fsdp_schema(description: str | None = None) -> dict:
    """``fsdp``: ``true``/``false``, the legacy options as one space-separated string or a list
    (``"full_shard auto_wrap"``, ``["full_shard", "offload"]``), or null."""
    from transformers.trainer_utils import FSDPOption

    options = [o.value for o in FSDPOption]
    words = "|".join(re.escape(o) for o in options)
    schema = {
        "anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": rf"^\s*({words})(\s+({words}))*\s*$",
             "x-fturun-hint": "space-separated options of: " + ", ".join(options)
                              + " (or write true and tune fsdp_config)"},
            {"type": "array", "minItems": 1, "items": {"enum": options}},
            {"type": "null"},
        ],
        "default": None,
    }
    if description:
        schema["description"] = description
    return schema


def fsdp_config_keys() -> dict:
    """The keys of ``fsdp_config`` the installed transformers reads, with their types."""
    from accelerate.utils.constants import (
        FSDP_AUTO_WRAP_POLICY,
        FSDP_BACKWARD_PREFETCH,
        FSDP_SHARDING_STRATEGY,
        FSDP_STATE_DICT_TYPE,
    )

    boolean = {"type": "boolean"}
    strategies = [s.lower() for s in FSDP_SHARDING_STRATEGY]
    return {
        "version": {"enum": [1, 2], "default": 2,
                    "description": "2: FSDP2 (fully_shard, the default); 1: FSDP1 (deprecated)"},
        "reshard_after_forward": {
            "anyOf": [boolean, {"enum": strategies}],
            "description": "FSDP2: true (full_shard, default) or false (shard_grad_op); FSDP1: "
                           "the sharding strategy, one of " + ", ".join(strategies)},
        "cpu_offload": boolean, "activation_checkpointing": boolean,
        "cpu_ram_efficient_loading": boolean,
        "state_dict_type": {"enum": list(FSDP_STATE_DICT_TYPE), "default": "FULL_STATE_DICT",
                            "description": "FULL_STATE_DICT: gathered on rank 0 (what model/ "
                                           "needs); SHARDED_STATE_DICT: one file per rank"},
        "auto_wrap_policy": {"enum": list(FSDP_AUTO_WRAP_POLICY)},
        "transformer_layer_cls_to_wrap": {
            "anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "items": {"type": "string", "minLength": 1}}]},
        "min_num_params": {"type": "integer", "minimum": 0},
        "forward_prefetch": boolean,
        "backward_prefetch": {"enum": list(FSDP_BACKWARD_PREFETCH)
                              + [p.lower() for p in FSDP_BACKWARD_PREFETCH]},
        "use_orig_params": boolean, "sync_module_states": boolean, "limit_all_gathers": boolean,
        "xla": boolean, "xla_fsdp_v2": boolean, "xla_fsdp_grad_ckpt": boolean,
        "xla_fsdp_settings": {"type": "object"},
    }


def fsdp_config_schema(description: str | None = None) -> dict:
    """``fsdp_config``: a JSON file's path, or an object of :func:`fsdp_config_keys` (unknown
    keys refused), or null."""
    keys = fsdp_config_keys()
    schema = {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "additionalProperties": False, "properties": keys,
             "patternProperties": {f"^fsdp_{key}$": value for key, value in keys.items()}},
            {"type": "null"},
        ],
        "default": None,
    }
    if description:
        schema["description"] = description
    return schema


def with_fsdp_types(properties: dict) -> dict:
    """``properties`` (the generated ``training`` ones) with ``fsdp`` and ``fsdp_config``
    replaced by their real schemas, descriptions kept."""
    if "fsdp" in properties:
        properties["fsdp"] = fsdp_schema(properties["fsdp"].get("description"))
    if "fsdp_config" in properties:
        properties["fsdp_config"] = fsdp_config_schema(
            properties["fsdp_config"].get("description"))
    return properties
