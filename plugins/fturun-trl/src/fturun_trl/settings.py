"""DPO's own settings, as the recipe's ``training`` section takes them for the ``preference``
task: a JSON Schema generated from the installed TRL's ``DPOConfig`` (the fields it adds to
``TrainingArguments``) by fturun's own generator of the ``training`` schema
(:func:`fturun.api.arguments_schema`), committed as ``dpo_settings.schema.json`` so that
validation never imports TRL when the installed TRL is the one it was generated from (the locked
version); with another TRL installed, :func:`installed_settings` generates the schema from it
once and caches it per version (:func:`fturun.api.installed_schema`). Regenerate the committed
file after a new lock::

    python -m fturun_trl.settings          # write
    python -m fturun_trl.settings --check  # exit 1 if the committed file is stale
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache
from pathlib import Path

SCHEMA_FILE = Path(__file__).resolve().parent / "dpo_settings.schema.json"

#: DPOConfig fields a recipe does not set: fturun builds the model and tokenizes the pairs
#: itself (``model``, ``data.max_length``), and ``pad_token`` is deprecated
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
    """The loss names DPOConfig's ``loss_type`` help lists (``'sigmoid'``, ``'hinge'``, ...)."""
    listed = help_text.split("Possible values are:")[-1].split(". If")[0]
    return re.findall(r"'([a-z_]+)'", listed)


def generate() -> dict:
    """The settings schema from the installed TRL (imports it)."""
    import trl
    from transformers import TrainingArguments
    from trl import DPOConfig

    from fturun.api import arguments_schema, installed_versions

    properties = arguments_schema(DPOConfig, base=TrainingArguments, constraints=CONSTRAINTS)
    properties = {k: v for k, v in properties.items() if k not in EXCLUDED}
    loss = properties["loss_type"]
    names = loss_types(loss["description"])
    # a single name is taken as a one-item list, as DPOConfig does
    properties["loss_type"] = {**loss, "type": ["string", "array"], "minItems": 1,
                               "items": {"enum": names},
                               "if": {"type": "string"}, "then": {"enum": names}}
    return {"title": "DPO settings (training, task preference)",
            "description": f"the settings TRL {trl.__version__}'s DPOConfig adds to "
                           "TrainingArguments",
            "x-trl-version": trl.__version__, "properties": properties,
            "x-generated-from": installed_versions(PACKAGES)}


#: the distributions the schema is generated from
PACKAGES = ("trl", "transformers")


@lru_cache(maxsize=1)
def committed_settings() -> dict:
    """The committed ``properties`` (made from the locked TRL)."""
    return json.loads(SCHEMA_FILE.read_text())["properties"]


def installed_settings() -> dict:
    """The ``properties`` of the installed TRL's ``DPOConfig``: what
    ``Task.training_settings`` holds (the committed file when the installed versions are the
    ones it was made from)."""
    from fturun.api import installed_schema

    return installed_schema("trl-dpo", SCHEMA_FILE, generate, PACKAGES,
                            generator_files=(__file__,))["properties"]


def dump(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv=None) -> int:
    """Write the schema file, or with ``--check`` exit 1 when it is stale."""
    argv = sys.argv[1:] if argv is None else argv
    text = dump(generate())
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else None
    if current == text:
        return 0
    if "--check" in argv:
        print(f"stale: {SCHEMA_FILE}")
        return 1
    SCHEMA_FILE.write_text(text)
    print(f"wrote: {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
