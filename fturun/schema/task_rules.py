"""What validation knows about tasks, read from the task records the plugins register
(``Registry.tasks``, :class:`fturun.plugin.tasks.Task`): their names, their default metrics, the
data
settings only some tasks accept, and whether a task generates."""

from __future__ import annotations

from ..recipe.refs import component_name
from .chat_rules import CHAT_KEYS, check_chat_data, format_reads

DEFAULT_TASK = "sequence-classification"


def task_property(registry, only_plugins=None) -> dict:
    """The schema of the recipe's ``task`` key: one of the registered tasks (of
    ``only_plugins`` when given), in registration order."""
    names = [name for name in registry.tasks
             if only_plugins is None or registry.task_plugins.get(name) in only_plugins]
    return {"enum": names, "default": DEFAULT_TASK,
            "description": "what the model learns; selects the model class, preprocessing, "
                           "default collator and metrics"}


def _task_records(registry, only_plugins=None) -> list:
    return [task for name, task in registry.tasks.items()
            if only_plugins is None or registry.task_plugins.get(name) in only_plugins]


def task_training_schema(registry, training: dict, only_plugins=None) -> dict:
    """The ``training`` schema with the settings tasks add (``Task.training_settings``), each
    marked ``x-fturun-task`` with the tasks that take it; TrainingArguments' own keep theirs."""
    added = {}
    for key, pairs in _settings_by_key(registry, only_plugins).items():
        if key in training["properties"]:
            continue
        tasks = [task.name for task, _ in pairs]
        schema = pairs[0][1] if _agree(pairs) else {
            "description": f"a setting of task {' and '.join(tasks)}, checked per task"}
        added[key] = {**schema, "x-fturun-task": tasks}
    if not added:
        return training
    return {**training, "properties": {**training["properties"], **added}}


def _settings_by_key(registry, only_plugins=None) -> dict:
    """setting -> ``[(task, its schema)]`` of the tasks' ``training_settings``."""
    by_key = {}
    for task in _task_records(registry, only_plugins):
        for key, schema in task.training_settings.items():
            by_key.setdefault(key, []).append((task, schema))
    return by_key


def _agree(pairs) -> bool:
    return all(schema == pairs[0][1] for _, schema in pairs)


def task_training_conditions(registry, training: dict, only_plugins=None) -> list:
    """``allOf`` entries of the recipe schema for the settings several tasks define
    differently (``beta``, ``loss_type`` of TRL's trainers): ``if task == X then
    training.<key>`` is X's schema, so a recipe is checked against its own task's."""
    return [{"if": {"properties": {"task": {"const": task.name}}, "required": ["task"]},
             "then": {"properties": {"training": {"properties": {key: schema}}}}}
            for key, pairs in _settings_by_key(registry, only_plugins).items()
            if key not in training["properties"] and not _agree(pairs)
            for task, schema in pairs]


def task_columns_schema(registry, data_schema: dict, only_plugins=None) -> dict:
    """The ``data`` schema with ``data.columns.<name>`` for the tasks' own columns
    (``Task.columns``)."""
    added = {name: {"type": "string", "default": name,
                    "description": f"the source column of '{name}' (task {task.name})"}
             for task in _task_records(registry, only_plugins) for name in task.columns}
    if not added:
        return data_schema
    columns = data_schema["properties"]["columns"]
    columns = {**columns, "properties": {**added, **columns["properties"]}}
    return {**data_schema, "properties": {**data_schema["properties"], "columns": columns}}


def _check_task_settings(data: dict, data_section: dict, record, add, registry) -> None:
    """``training`` settings and ``data.columns`` of other tasks than the recipe's."""
    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    for key in training:
        tasks = [t.name for t in registry.tasks.values() if key in t.training_settings]
        if tasks and record.name not in tasks:
            add(["training", key], f"training.{key} is a setting of task "
                f"{' or '.join(tasks)}, not '{record.name}'; remove it or set 'task'")
    columns = data_section.get("columns")
    for key in columns if isinstance(columns, dict) else {}:
        tasks = [t.name for t in registry.tasks.values() if key in t.columns]
        if tasks and record.name not in tasks and key not in format_reads(data_section):
            add(["data", "columns", key], f"data.columns.{key} is a column of task "
                f"{' or '.join(tasks)}, not '{record.name}'")
        elif record.columns and key in ("text", "text_pair", "label", "target"):
            add(["data", "columns", key], f"task '{record.name}' reads the columns "
                f"{', '.join(record.columns)}, not {key}: map those instead")


def _record(registry, data: dict):
    task = data.get("task", DEFAULT_TASK)
    return registry.tasks.get(task) if isinstance(task, str) else None


def check_task_data(data: dict, data_section: dict, add, registry,
                    base_dir: str = ".") -> None:
    """Data settings and sections only some tasks accept; ``add(path, message)`` reports each
    problem. ``base_dir``: the recipe's folder (a chat template file is relative to it)."""
    record = _record(registry, data)
    if record is None:
        return  # an unknown task is the schema's error
    task = record.name
    _check_task_settings(data, data_section, record, add, registry)
    check_chat_data(base_dir, data_section, record, add, registry)
    for key in sorted({key for t in registry.tasks.values() for key in t.data_keys}):
        if key in CHAT_KEYS:  # check_chat_data says what to do with them
            continue
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
    _check_rewards(data, record, add, registry)
    if data.get("generation") is not None and not record.generates:
        tasks = [t.name for t in registry.tasks.values() if t.generates]
        add(["generation"], f"'generation' is for task {' or '.join(tasks)}, not '{task}'")


def _check_rewards(data: dict, record, add, registry) -> None:
    """``rewards`` exactly for a task whose Trainer takes them (``Task.takes_rewards``)."""
    takers = [t.name for t in registry.tasks.values() if t.takes_rewards]
    rewards = data.get("rewards")
    if rewards is not None and not record.takes_rewards:
        add(["rewards"], f"'rewards' is for task {' or '.join(takers) or '(none installed)'}"
            f", not '{record.name}'; remove it or set 'task'")
    elif record.takes_rewards and not rewards:
        add(["rewards"], f"task '{record.name}' trains on rewards: list at least one, e.g. "
            '"rewards": [{"name": "regex_match", "params": {"pattern": "\\d+"}}] '
            "(fturun components reward lists them)")


def effective_metrics(data: dict, registry) -> list:
    """The metric references a recipe computes: its ``metrics``, else its task's defaults;
    plus the task's ``always_metrics`` (language models always compute perplexity)."""
    record = _record(registry, data)
    metrics = data.get("metrics")
    if record is None:
        return list(metrics) if isinstance(metrics, list) else []
    return record.metrics_for(metrics)


def generation_metrics(data: dict, registry) -> list:
    """The metric references of the recipe's generation-based evaluation (its task's
    ``generation_metrics``; none when the task has no ``answer_prompts`` or
    ``generation.eval_rows`` is 0): scores at each evaluation beside ``effective_metrics``."""
    record = _record(registry, data)
    generation = data.get("generation") if isinstance(data.get("generation"), dict) else {}
    if record is None or record.answer_prompts is None or generation.get("eval_rows") == 0:
        return []
    return list(record.generation_metrics)


def computed_metric_names(data: dict, registry) -> list:
    """Names of the metrics a recipe computes (the keys its metric functions return, and the
    metrics its task's Trainer logs itself)."""
    record = _record(registry, data)
    own = list(record.trainer_metrics) if record is not None else []
    return [n for n in (component_name(m) for m in effective_metrics(data, registry)) if n] + own
