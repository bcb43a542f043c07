"""What validation knows about tasks, read from the task records the plugins register
(``Registry.tasks``, :class:`fturun.tasks.Task`): their names, their default metrics, the data
settings only some tasks accept, and whether a task generates."""

from __future__ import annotations

from ..registry import component_name

DEFAULT_TASK = "sequence-classification"


def task_property(registry, only_plugins=None) -> dict:
    """The schema of the recipe's ``task`` key: one of the registered tasks (of
    ``only_plugins`` when given), in registration order."""
    names = [name for name in registry.tasks
             if only_plugins is None or registry.task_plugins.get(name) in only_plugins]
    return {"enum": names, "default": DEFAULT_TASK,
            "description": "what the model learns; selects the model class, preprocessing, "
                           "default collator and metrics"}


def _record(registry, data: dict):
    task = data.get("task", DEFAULT_TASK)
    return registry.tasks.get(task) if isinstance(task, str) else None


def check_task_data(data: dict, data_section: dict, add, registry) -> None:
    """Data settings and sections only some tasks accept; ``add(path, message)`` reports each
    problem."""
    record = _record(registry, data)
    if record is None:
        return  # an unknown task is the schema's error
    task = record.name
    for key in sorted({key for t in registry.tasks.values() for key in t.data_keys}):
        if data_section.get(key) not in (None, False) and key not in record.data_keys:
            tasks = [t.name for t in registry.tasks.values() if key in t.data_keys]
            add(["data", key], f"data.{key} is for task {' or '.join(tasks)}, not '{task}'")
    if data_section.get("packing") is True and record.packed_collator is not None:
        if data_section.get("block_size") is not None:
            add(["data", "packing"], "data.packing and data.block_size both shape the rows; "
                "keep one (packing: whole texts without padding; block_size: fixed blocks)")
        collator, packed = component_name(data.get("collator")), \
            component_name(record.packed_collator)
        if collator is not None and collator != packed:
            add(["collator"], f"data.packing needs the '{packed}' collator, not '{collator}'; "
                f"remove 'collator' ({packed} is the default then)")
    if data.get("generation") is not None and not record.generates:
        tasks = [t.name for t in registry.tasks.values() if t.generates]
        add(["generation"], f"'generation' is for task {' or '.join(tasks)}, not '{task}'")


def effective_metrics(data: dict, registry) -> list:
    """The metric references a recipe computes: its ``metrics``, else its task's defaults;
    plus the task's ``always_metrics`` (language models always compute perplexity)."""
    record = _record(registry, data)
    metrics = data.get("metrics")
    if record is None:
        return list(metrics) if isinstance(metrics, list) else []
    return record.metrics_for(metrics)


def computed_metric_names(data: dict, registry) -> list:
    """Names of the metrics a recipe computes (the keys its metric functions return)."""
    return [n for n in (component_name(m) for m in effective_metrics(data, registry)) if n]
