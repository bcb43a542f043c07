"""Names of TrainingArguments optimizers that need more than torch: a table both the optimizer
components (:mod:`fturun.builtin.optimizers`) and the hardware rules (:mod:`fturun.engine.hardware`)
read."""

from __future__ import annotations

#: ``optim`` names that run on bitsandbytes (8-bit / paged optimizers: a CUDA GPU only)
BNB_OPTIMIZERS = frozenset({
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "ademamix",
    "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw_8bit", "galore_adamw_8bit_layerwise"})
