"""plan (layer 4): the planner. Before any weight is loaded, from the recipe and the model's config
alone: parameters (exact, from the model built on the meta device), memory per device broken
down, time per step and for the run, a verdict against the device's memory with the changes that
make a recipe fit; and, during a run, the measured peak memory and step time beside it.

Modules: :mod:`.model_config` (the config, read without torch), :mod:`.census` (the meta model's
parameter counts), :mod:`.settings` (what the recipe asks for), :mod:`.devices` (the target
device), :mod:`.memory`, :mod:`.speed`, :mod:`.verdict` (fit, suggestions, ``"auto"`` batch),
:mod:`.text` (what is printed and recorded), :mod:`.measure` (the run's peak memory)."""

from __future__ import annotations

from .make import Plan, PlanError, make_plan, plan_for_recipe

__all__ = ["Plan", "PlanError", "make_plan", "plan_for_recipe"]
