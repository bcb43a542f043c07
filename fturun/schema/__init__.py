"""schema (layer 2): the recipe JSON Schema, composed and validated.

The recipe schema is composed from the registered components (:mod:`.compose`, with the fixed
sections of :mod:`.sections`), and validation collecting every problem at once (:mod:`.validate`:
schema errors worded by :mod:`.problems`, cross-field rules of :mod:`.rules`,
:mod:`.task_rules` and :mod:`.search_rules`, dotted keys checked by :mod:`.keys`). The validator
applies fturun's number rule (:mod:`.numbers`): an integer field takes a JSON integer."""

from .compose import TRAINING_SCHEMA_FILE, component_schema, compose_schema, training_schema
from .keys import check_recipe_key
from .rules import check_rules
from .sections import COMPONENT_SECTIONS, DEEPSPEED_CONFIG, DRAFT, GENERATION, SEARCH
from .task_rules import computed_metric_names, effective_metrics
from .validate import validate_recipe

__all__ = [
    "COMPONENT_SECTIONS",
    "DEEPSPEED_CONFIG",
    "DRAFT",
    "GENERATION",
    "SEARCH",
    "TRAINING_SCHEMA_FILE",
    "check_recipe_key",
    "check_rules",
    "component_schema",
    "compose_schema",
    "computed_metric_names",
    "effective_metrics",
    "training_schema",
    "validate_recipe",
]
