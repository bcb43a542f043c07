"""The model's config, found and read the way the model loaders would find it (a local folder, a
``package:`` path, the Hub cache, or ``model.params.config`` of ``from_config``), without torch
or transformers; and the shape figures the memory and time models need, under the names the
config families use."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..core.errors import FturunError
from ..recipe.paths import resolve_path
from ..recipe.refs import component_ref


class PlanError(FturunError):
    """A plan cannot be made from this input (exit 2): located, saying what to change."""

    exit_code = 2


#: figure -> the config fields that carry it, in the order the families use them
ALIASES = {
    "hidden": ("hidden_size", "n_embd", "d_model", "dim"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "kv_heads": ("num_key_value_heads", "n_head_kv", "num_kv_heads"),
    "intermediate": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "encoder_ffn_dim"),
    "vocab": ("vocab_size",),
    "head_dim": ("head_dim", "d_kv"),
    "attn_dropout": ("attention_probs_dropout_prob", "attn_pdrop", "attention_dropout",
                     "dropout_rate"),
    "hidden_dropout": ("hidden_dropout_prob", "resid_pdrop", "dropout", "dropout_rate"),
    "act": ("hidden_act", "activation_function", "hidden_activation", "feed_forward_proj"),
    "positions": ("max_position_embeddings", "n_positions", "n_ctx"),
}
#: model types whose MLP is gated (SwiGLU / GeGLU: gate and up projections)
GATED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
         "phi3", "olmo", "olmo2", "granite", "cohere", "smollm3")


@dataclass
class Shape:
    """The transformer's figures that memory and time depend on."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated: bool
    attn_dropout: float
    hidden_dropout: float
    positions: int | None


def _first(fields: dict, figure: str, default=None):
    for key in ALIASES[figure]:
        if fields.get(key) is not None:
            return fields[key]
    return default


def shape_of(fields: dict) -> Shape:
    """The :class:`Shape` of a config's fields (``text_config`` for a multimodal config)."""
    fields = {**fields.get("text_config", {}), **fields} if "text_config" in fields else fields
    hidden = int(_first(fields, "hidden", 0) or 0)
    heads = int(_first(fields, "heads", 1) or 1)
    if not hidden or not _first(fields, "layers"):
        raise PlanError("the model config has no hidden size or layer count the planner knows "
                        f"(looked for {', '.join(ALIASES['hidden'] + ALIASES['layers'])})")
    model_type = str(fields.get("model_type", ""))
    act = str(_first(fields, "act", "") or "")
    return Shape(
        model_type=model_type, hidden=hidden, layers=int(_first(fields, "layers")), heads=heads,
        kv_heads=int(_first(fields, "kv_heads", heads) or heads),
        head_dim=int(_first(fields, "head_dim", 0) or hidden // heads),
        intermediate=int(_first(fields, "intermediate", 4 * hidden) or 4 * hidden),
        vocab=int(_first(fields, "vocab", 0) or 0),
        gated=model_type in GATED or "gated" in act or act.endswith("glu"),
        attn_dropout=float(_first(fields, "attn_dropout", 0.0) or 0.0),
        hidden_dropout=float(_first(fields, "hidden_dropout", 0.0) or 0.0),
        positions=_first(fields, "positions"))


@dataclass
class ConfigSource:
    """Where the config came from and its fields; ``folder`` for ``from_pretrained``,
    ``tokenizer`` for ``from_config`` (its length is the vocabulary)."""

    fields: dict
    where: str
    folder: str | None = None
    tokenizer: str | None = None


def read_model_config(model_ref, base_dir: str | None = None) -> ConfigSource:
    """The config of the recipe's ``model``: ``pretrained`` (a folder, ``package:`` path, or a
    Hub name in the local cache) or ``from_config``; :class:`PlanError` located at the
    recipe's key when it cannot be read."""
    name, params = component_ref(model_ref)
    if name == "from_config":
        return _from_config(params, base_dir)
    if name != "pretrained" or not params.get("path"):
        raise PlanError(f"$.model: the planner reads the config of 'pretrained' and "
                        f"'from_config' models; '{name}' is a plugin's loader, whose model it "
                        "cannot know before loading")
    path = params["path"]
    folder = _locate(path, base_dir, "$.model.params.path")
    fields = _read_json(os.path.join(folder, "config.json"), "$.model.params.path", path)
    return ConfigSource(fields=fields, where=path, folder=folder)


def _from_config(params: dict, base_dir) -> ConfigSource:
    config = params.get("config")
    tokenizer = params.get("tokenizer")
    tokenizer_dir = _locate(tokenizer, base_dir, "$.model.params.tokenizer") if tokenizer \
        else None
    if isinstance(config, dict):
        return ConfigSource(fields=dict(config), where="model.params.config",
                            tokenizer=tokenizer_dir)
    folder = _locate(config, base_dir, "$.model.params.config")
    file = folder if os.path.isfile(folder) else os.path.join(folder, "config.json")
    return ConfigSource(fields=_read_json(file, "$.model.params.config", config), where=config,
                        folder=os.path.dirname(file), tokenizer=tokenizer_dir)


def _locate(path: str, base_dir, key: str) -> str:
    """A local folder for ``path``: itself, a ``package:`` path, relative to the recipe, or a
    Hub name's snapshot in the local cache."""
    try:
        resolved = resolve_path(path, base_dir)
    except FturunError as exc:
        raise PlanError(f"{key}: {exc}") from None
    if os.path.exists(resolved):
        return resolved
    snapshot = _hub_snapshot(path)
    if snapshot:
        return snapshot
    raise PlanError(f"{key}: '{path}' is neither a folder here nor a Hub model in the local "
                    f"cache (looked for {resolved}); download it, or plan with a local copy "
                    "of its config.json")


def _hub_snapshot(name: str) -> str | None:
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(name, "config.json")
    return os.path.dirname(found) if isinstance(found, str) else None


def _read_json(file: str, key: str, shown: str) -> dict:
    try:
        with open(file, encoding="utf-8") as handle:
            fields = json.load(handle)
    except FileNotFoundError:
        raise PlanError(f"{key}: '{shown}' has no config.json ({file}); the planner reads the "
                        "model's config only") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{key}: cannot read the model config {file}: {exc}") from None
    if not isinstance(fields, dict) or "model_type" not in fields:
        raise PlanError(f"{key}: {file} is not a model config (no 'model_type')")
    return fields
