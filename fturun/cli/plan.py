"""``fturun plan RECIPE``: will it fit, how long will it take — the planner's figures before any
weight is loaded (:mod:`fturun.plan`)."""

from __future__ import annotations

import json

from .common import load_valid_recipe

HELP = (
        "will it fit, how long will it take: memory and time before any weight is loaded",
        "From the recipe and the model's config alone (the model built on the meta device, no "
        "weight read): exact parameter counts, memory per device broken down (weights, "
        "gradients, optimizer states, master weights, activations, the framework's), time per "
        "step and for the run, and a verdict against the device's memory (this machine's, or "
        "--gpu / --memory for one you do not have) with the changes that make it fit, each "
        "keeping the effective batch size.",
        """\
  fturun plan recipes/lora_cls.json                   on this machine
  fturun plan recipes/lora_cls.json --gpu rtx4090     on a GPU you do not have
  fturun plan recipes/full_cls.json --memory 0.5 data.max_length=512    what would make it fit
  fturun plan recipes/ds_zero2_cls.json --devices 4 --gpu a100-40gb --price-per-hour 1.8
""")


def add_arguments(plan, add_overrides, positive) -> None:
    """The arguments of ``fturun plan``."""
    add_overrides(plan)
    plan.add_argument("--devices", type=positive, default=1, metavar="N",
                      help="devices (processes) the run is planned over (default 1)")
    target = plan.add_mutually_exclusive_group()
    target.add_argument("--gpu", metavar="NAME",
                        help="plan for this GPU (h100, a100-80gb, rtx4090, l4, t4, ...) "
                             "instead of this machine's device")
    target.add_argument("--memory", type=float, metavar="GB",
                        help="plan for a GPU with this much memory (GiB; an H100's speed)")
    plan.add_argument("--price-per-hour", type=float, metavar="PRICE",
                      help="price of one device for an hour: the plan adds the run's cost")
    plan.add_argument("--json", action="store_true",
                      help="the plan as JSON (the plan.* record and the suggestions)")


def cmd_plan(args) -> int:
    """Validate, then plan memory and time from the recipe and the model's config."""
    recipe, loaded = load_valid_recipe(args.recipe, args.overrides, check_hub=False)
    from ..plan import plan_for_recipe
    from ..plan.text import plan_lines, plan_record

    plan = plan_for_recipe(recipe, loaded.registry, devices=args.devices, gpu=args.gpu,
                           memory_gb=args.memory, price_per_hour=args.price_per_hour,
                           file=recipe.path)
    if args.json:
        print(json.dumps({**plan_record(plan), "suggestions": [
            {"change": found["change"], "peak_bytes": int(found["figures"]["memory"]["peak"]),
             "step_seconds": round(found["figures"]["step"]["total"], 4)}
            for found in plan.suggestions]}, indent=2))
    else:
        print("\n".join(plan_lines(plan)))
    return 0
