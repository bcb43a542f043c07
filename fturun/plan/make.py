"""A plan from a validated recipe: the config read, the census taken, the settings read, the
device chosen; then its figures, the verdict and the suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.distributed import load_deepspeed_config
from ..plugin.tasks import get_task
from ..recipe.refs import component_ref
from .census import take_census
from .devices import Device, target_device
from .memory import memory_parts
from .model_config import PlanError, read_model_config, shape_of
from .settings import read_settings, training_section
from .speed import run_steps, run_time, step_seconds
from .verdict import AUTO_MARGIN, QLORA_ADAPTER, auto_batch, fits, suggestions

#: tasks whose loss is over the vocabulary at every token (the logits are a large tensor)
VOCAB_HEADS = ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForSeq2SeqLM")

__all__ = ["Plan", "PlanError", "Planner", "make_plan", "plan_for_recipe"]


@dataclass
class DataFigures:
    """What the data says, when it is known: rows per split, tokens per row (``longest`` for
    memory, ``padded`` the mean of a batch's padded length for time), the label count."""

    train_rows: int | None = None
    eval_rows: int | None = None
    longest: int | None = None
    padded: float | None = None
    num_labels: int | None = None
    source: str = "data.max_length"


@dataclass
class Planner:
    """Figures of any configuration of one recipe's model on one device."""

    census: dict
    shape: object
    device: Device
    training: dict
    data: DataFigures
    price_per_hour: float | None = None
    qlora_census: object = None  # a callable giving the census with a LoRA adapter

    def seq(self, s) -> int:
        return min(self.data.longest or s.seq_len, s.seq_len)

    def figures(self, s) -> dict:
        """``memory`` parts and ``step`` seconds of the configuration ``s``."""
        census = self.census
        if s.quant_bits and not census.get("adapter") and self.qlora_census:
            census = self.qlora_census()
        tokens = min(self.data.padded or s.seq_len, s.seq_len)
        return {"memory": memory_parts(census, self.shape, s, self.seq(s), self.device.kind),
                "step": step_seconds(census, self.shape, s, self.device, tokens)}


@dataclass
class Plan:
    """A recipe's plan: its settings and figures, the verdict, the suggestions."""

    planner: Planner
    settings: object
    figures: dict
    fits: bool
    run: dict = field(default_factory=dict)
    suggestions: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def make_plan(planner: Planner, s) -> Plan:
    """The plan of settings ``s``: figures, run time, verdict and (when it does not fit)
    suggestions."""
    figures = planner.figures(s)
    tokens = min(planner.data.padded or s.seq_len, s.seq_len)
    steps = run_steps(planner.data.train_rows, planner.training, s.effective_batch)
    run = run_time(figures["step"], steps, planner.data.eval_rows, planner.training, s,
                   tokens, planner.price_per_hour)
    ok = fits(figures, planner.device.memory)
    return Plan(planner, s, figures, ok, run, [] if ok else suggestions(planner, s))


def plan_for_recipe(recipe, registry, *, devices: int = 1, gpu: str | None = None,
                    memory_gb: float | None = None, data: DataFigures | None = None,
                    price_per_hour: float | None = None, device: Device | None = None,
                    file: str | None = None) -> Plan:
    """The plan of a validated recipe (``recipe.data``) on ``devices`` devices of the target
    (:func:`~fturun.plan.devices.target_device`), from its model's config alone; ``data``:
    what the data says where it was read. A :class:`PlanError` at a recipe key is located in
    ``file`` (``FILE::$.model.params.path: ...``)."""
    device = device or target_device(gpu, memory_gb)
    try:
        return _plan(recipe, registry, devices, device, data, price_per_hour)
    except PlanError as exc:
        text = str(exc)
        if file and text.startswith("$."):
            raise PlanError(f"{file}::{text}") from None
        raise


def _plan(recipe, registry, devices, device, data, price_per_hour) -> Plan:
    spec = recipe.data
    data = data or rows_from_recipe(spec)
    source = read_model_config(spec["model"], recipe.base_dir)
    task = get_task(registry, spec.get("task", "sequence-classification"))
    model_kwargs = {"num_labels": data.num_labels} if data.num_labels else {}
    _, model_params = component_ref(spec["model"])
    skip = (model_params.get("quantization") or {}).get("skip_modules") or ()
    census_args = dict(source=source, model_class=task.model_class, model_kwargs=model_kwargs,
                       peft_task_type=task.peft_task_type, skip_modules=skip,
                       attn=model_params.get("attn_implementation"))
    adapter = _adapter_with_defaults(registry, spec.get("adapter"))
    census = _marked(take_census(adapter=adapter, **census_args), adapter, task)
    s = read_settings(spec, load_deepspeed_config(recipe), devices, device.kind == "cuda",
                      device.bf16, source.fields)
    shape = shape_of(source.fields)
    shape.vocab = shape.vocab or census.get("vocab", 0)
    planner = Planner(census, shape, device, training_section(spec), data, price_per_hour)
    planner.qlora_census = lambda: _marked(take_census(adapter=QLORA_ADAPTER, **census_args),
                                           QLORA_ADAPTER, task)
    training = training_section(spec)
    if training.get("per_device_train_batch_size") == "auto":
        effective = int(training.get("effective_batch_size") or s.accumulation * s.devices)
        batch, accumulation = auto_batch(planner, s, effective)
        s = s.but(batch=batch, accumulation=accumulation)
    plan = make_plan(planner, s)
    if training.get("per_device_train_batch_size") == "auto":
        plan.notes.append(f"batch: \"auto\" -> {s.batch} per device x {s.accumulation} "
                          f"accumulation (the largest that fits with {AUTO_MARGIN:.0%} of the "
                          "memory free)")
    if data.num_labels is None and task.peft_task_type in ("SEQ_CLS", "TOKEN_CLS"):
        plan.notes.append(f"labels: the config's {census.get('num_labels', 'default')} (the "
                          "head grows with the data's labels: a few parameters)")
    return plan


def _marked(census: dict, adapter, task) -> dict:
    return {**census, "adapter": adapter is not None,
            "lm_head": task.model_class in VOCAB_HEADS}


def _adapter_with_defaults(registry, ref):
    """The recipe's adapter as ``{"name", "params"}`` with its schema's defaults filled in
    (what its factory gets)."""
    if ref is None:
        return None
    name, params = component_ref(ref)
    try:
        params = registry.get("adapter", name).params_for(params)
    except KeyError:
        pass
    return {"name": name, "params": params}


def rows_from_recipe(spec: dict) -> DataFigures:
    """What the recipe itself says of the data: ``data.max_train_samples`` and
    ``max_eval_samples`` as row counts (an upper bound: the data may hold fewer)."""
    section = spec.get("data") or {}
    return DataFigures(train_rows=section.get("max_train_samples"),
                       eval_rows=section.get("max_eval_samples"))
