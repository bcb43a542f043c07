"""The TRL trainers' own settings, as the recipe's ``training`` section takes them for the
plugin's tasks (``DPOConfig`` for ``preference``, ``GRPOConfig`` for ``grpo``, ``RewardConfig``
for ``reward_model``, ``KTOConfig`` for ``kto``): each a JSON Schema generated from the installed
TRL's config class (the fields it adds to ``TrainingArguments``) by fturun's own generator of
the ``training`` schema (:func:`fturun.api.arguments_schema`), committed as
``<key>_settings.schema.json`` so that validation never imports TRL when the installed TRL
is the one it was generated from (the locked version); with another TRL installed,
:func:`installed_settings` generates the schema from it once and caches it per version
(:func:`fturun.api.installed_schema`). Regenerate the committed files after a new lock::

    python -m fturun_trl.settings          # write
    python -m fturun_trl.settings --check  # exit 1 if a committed file is stale
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """One TRL config's settings schema: what is left out, the ranges the types cannot say, and
    a last touch of the properties."""

    key: str  # the schema file is <key>_settings.schema.json
    config: str  # the TRL config class
    task: str
    #: fields a recipe does not set: fturun builds the model and tokenizes the rows itself
    #: (``model``, ``data.max_length``); deprecated fields
    excluded: tuple
    constraints: dict = field(default_factory=dict)
    shape: object = None  # properties -> properties

    @property
    def file(self) -> Path:
        return HERE / f"{self.key}_settings.schema.json"


#: DPOConfig fields a recipe does not set (``pad_token`` is deprecated)
EXCLUDED = ("model_init_kwargs", "trust_remote_code", "dataset_num_proc", "max_length",
            "truncation_mode", "padding_free", "pad_to_multiple_of", "pad_token")

#: the ranges the dataclass types cannot say
CONSTRAINTS = {
    "beta": {"exclusiveMinimum": 0},
    "label_smoothing": {"minimum": 0, "exclusiveMaximum": 1},
    "ld_alpha": {"minimum": 0, "maximum": 1},
    "ref_model_mixup_alpha": {"minimum": 0, "maximum": 1},
    "ref_model_sync_steps": {"minimum": 1},
    "precompute_ref_batch_size": {"minimum": 1},
    "f_divergence_type": {"enum": ["reverse_kl", "forward_kl", "js_divergence",
                                   "alpha_divergence"]},
}


def loss_types(help_text: str) -> list:
    """The loss names a config's ``loss_type`` help lists (``'sigmoid'``, ``'hinge'``, ...)."""
    listed = help_text.split("Possible values are:")[-1].split(". If")[0]
    return re.findall(r"'([a-z_]+)'", listed)


def _dpo_shape(properties: dict) -> dict:
    loss = properties["loss_type"]
    names = loss_types(loss["description"])
    # a single name is taken as a one-item list, as DPOConfig does
    properties["loss_type"] = {**loss, "type": ["string", "array"], "minItems": 1,
                               "items": {"enum": names},
                               "if": {"type": "string"}, "then": {"enum": names}}
    return properties


def _grpo_shape(properties: dict) -> dict:
    loss = properties["loss_type"]
    names = re.findall(r"'([a-z_]+)'", loss["description"].split("Supported values are")[-1]
                       .split(".")[0])
    if names:
        properties["loss_type"] = {**loss, "enum": names}
    return properties


SETTINGS = {
    "dpo": Settings("dpo", "DPOConfig", "preference", EXCLUDED, CONSTRAINTS, _dpo_shape),
    "grpo": Settings(
        "grpo", "GRPOConfig", "grpo",
        # the weights come from the recipe's rewards; the model is built by fturun
        ("model_init_kwargs", "trust_remote_code", "pad_to_multiple_of", "reward_weights",
         "cast_lm_head_to_fp32", "log_completions_hub_repo"),
        {"beta": {"minimum": 0}, "num_generations": {"minimum": 2},
         "max_completion_length": {"minimum": 1}, "temperature": {"exclusiveMinimum": 0},
         "top_p": {"exclusiveMinimum": 0, "maximum": 1}, "num_iterations": {"minimum": 1},
         "epsilon": {"minimum": 0}, "steps_per_generation": {"minimum": 1},
         "generation_batch_size": {"minimum": 1},
         "ref_model_mixup_alpha": {"minimum": 0, "maximum": 1},
         "ref_model_sync_steps": {"minimum": 1}},
        _grpo_shape),
    "reward": Settings(
        "reward", "RewardConfig", "reward_model",
        ("model_init_kwargs", "trust_remote_code", "chat_template_path", "dataset_num_proc",
         "eos_token", "max_length", "pad_to_multiple_of", "pad_token")),
    "kto": Settings(
        "kto", "KTOConfig", "kto",
        ("model_init_kwargs", "trust_remote_code", "dataset_num_proc", "max_length",
         "pad_to_multiple_of"),
        {"beta": {"exclusiveMinimum": 0}, "desirable_weight": {"exclusiveMinimum": 0},
         "undesirable_weight": {"exclusiveMinimum": 0},
         "ref_model_mixup_alpha": {"minimum": 0, "maximum": 1},
         "ref_model_sync_steps": {"minimum": 1}, "precompute_ref_batch_size": {"minimum": 1}}),
}
SCHEMA_FILE = SETTINGS["dpo"].file


def generate(key: str = "dpo") -> dict:
    """The settings schema of ``key`` from the installed TRL (imports it)."""
    import trl
    from transformers import TrainingArguments

    from fturun.api import arguments_schema, installed_versions

    spec = SETTINGS[key]
    config = getattr(trl, spec.config)
    properties = arguments_schema(config, base=TrainingArguments, constraints=spec.constraints)
    properties = {k: v for k, v in properties.items() if k not in spec.excluded}
    if spec.shape is not None:
        properties = spec.shape(properties)
    title = "DPO" if key == "dpo" else spec.config.removesuffix("Config")
    return {"title": f"{title} settings (training, task {spec.task})",
            "description": f"the settings TRL {trl.__version__}'s {spec.config} adds to "
                           "TrainingArguments",
            "x-trl-version": trl.__version__, "properties": properties,
            "x-generated-from": installed_versions(PACKAGES)}


#: the distributions the schema is generated from
PACKAGES = ("trl", "transformers")


@cache
def committed_settings(key: str = "dpo") -> dict:
    """The committed ``properties`` (made from the locked TRL)."""
    return json.loads(SETTINGS[key].file.read_text())["properties"]


def installed_settings(key: str = "dpo") -> dict:
    """The ``properties`` of the installed TRL's config of ``key``: what
    ``Task.training_settings`` holds (the committed file when the installed versions are the
    ones it was made from)."""
    from fturun.api import installed_schema

    name = "trl-dpo" if key == "dpo" else f"trl-{key}"
    return installed_schema(name, SETTINGS[key].file, lambda: generate(key), PACKAGES,
                            generator_files=(__file__,))["properties"]


def dump(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv=None) -> int:
    """Write the schema files, or with ``--check`` exit 1 when one is stale."""
    argv = sys.argv[1:] if argv is None else argv
    stale = 0
    for key, spec in SETTINGS.items():
        text = dump(generate(key))
        current = spec.file.read_text() if spec.file.exists() else None
        if current == text:
            continue
        if "--check" in argv:
            print(f"stale: {spec.file}")
            stale = 1
            continue
        spec.file.write_text(text)
        print(f"wrote: {spec.file}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
