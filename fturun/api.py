"""The public plugin API (layer 3): everything a fturun plugin imports of fturun, in one place.

fturun's own built-ins (:mod:`fturun.builtin`) import only this module, exactly like a
third-party plugin. Read it with :mod:`fturun.hookspecs` (the hooks and their contracts) and one
built-in module (``fturun/builtin/datasets.py``). Nothing here imports torch or transformers.

This module, the hooks and the contracts are the **plugin API**, versioned on its own:
:data:`API_VERSION` (``MAJOR.MINOR``; a minor release only adds, a major one may change or
remove). A plugin states the range it works with as a module attribute,
``FTURUN_API = ">=1.0,<2"``, and is refused with a message naming both when this fturun's API is
outside it. Names not listed in ``__all__`` below are not part of the API: what a plugin may
import of fturun is this module and, for its tests, :mod:`fturun.testing`; the rest of the
package is fturun's own and may change in any release.

- writing a plugin: :data:`hookimpl`; the context a factory gets: :class:`BuildContext`; the
  error a factory raises for a user's mistake: :class:`RecipeRuntimeError`;
- typed contracts (:mod:`fturun.plugin.contracts`): :class:`Register`, :class:`RegisterTask`, and
  per kind the factory and what it returns: :class:`DatasetFactory`, :class:`ModelFactory`,
  :class:`AdapterFactory`, :class:`CollatorFactory` / :class:`Collator`,
  :class:`LossFactory` / :class:`LossFunction`, :class:`MetricFactory` /
  :class:`MetricFunction`, :class:`CallbackFactory`, :class:`OptimizerFactory` /
  :class:`OptimizerSettings`, :class:`SchedulerFactory` / :class:`SchedulerSettings`
  (:data:`MakeScheduler`), :class:`RewardFactory` / :class:`RewardFunction` (API 1.3);
  ``context.tracker``: :class:`RunTracker`;
- testing a plugin: :mod:`fturun.testing` (plain functions and pytest fixtures);
- a task: :class:`Task` (registered through ``fturun_register_tasks``), the
  :class:`TokenizeSettings` its ``tokenize`` gets, :func:`generation_settings`;
- conversations (:mod:`fturun.chat.conversation`): :func:`prepare_chat_tokenizer` (the run's
  chat template on a tokenizer), :func:`conversation_tokens` (ids and completion-only labels),
  :func:`prompt_and_answer` (a row's prompt with the generation prompt, and its answer),
  :func:`encode_rendered`, :func:`end_of_turn_ids`;
- recipe references: :func:`component_ref`, :func:`component_name`, :func:`resolve_path`;
- output files: :func:`write_text`, :func:`write_json`, :func:`write_lines` (atomic);
- resources: :func:`free_bytes`, :func:`available_memory`, :func:`human_bytes`,
  :func:`datasets_cache_dir`; the Hub: :func:`hub_unreachable_message`;
- dataset columns: :func:`is_list_column`, :func:`column_dtype`, :func:`is_integer_feature`,
  :func:`as_string_column`;
- TrainingArguments: :func:`training_schema` (the schema of the installed transformers),
  :data:`BNB_OPTIMIZERS`; :func:`arguments_schema` (API 1.1), the generator of that schema, for
  a task whose Trainer takes an arguments class of its own (its ``Task.training_settings``:
  generate them, commit them for the locked version, test them fresh);
  :func:`installed_schema` (API 1.2) gives such a committed schema for the installed version
  (generated and cached when another version is installed), :func:`installed_versions`.
"""

from __future__ import annotations

from .chat.conversation import (
    conversation_tokens,
    encode_rendered,
    end_of_turn_ids,
    prompt_and_answer,
)
from .chat.templates import prepare_chat_tokenizer
from .core.errors import PluginError, RecipeRuntimeError
from .core.io import write_json, write_lines, write_text
from .core.resources import available_memory, datasets_cache_dir, free_bytes, human_bytes
from .core.suggest import suggest
from .data.features import as_string_column, column_dtype, is_integer_feature, is_list_column
from .engine.hub import hub_unreachable_message
from .engine.optim_names import BNB_OPTIMIZERS
from .hookspecs import hookimpl
from .plugin.context import BuildContext
from .plugin.contracts import (
    AdapterFactory,
    CallbackFactory,
    Collator,
    CollatorFactory,
    DatasetFactory,
    LossFactory,
    LossFunction,
    MakeScheduler,
    MetricFactory,
    MetricFunction,
    ModelFactory,
    OptimizerFactory,
    OptimizerSettings,
    Register,
    RegisterTask,
    RewardFactory,
    RewardFunction,
    RunTracker,
    SchedulerFactory,
    SchedulerSettings,
)
from .plugin.tasks import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_NUM_SAMPLES,
    Task,
    TokenizeSettings,
    generation_settings,
)
from .plugin.version import API_VERSION
from .recipe.paths import resolve_path
from .recipe.refs import component_name, component_ref
from .schema import training_schema
from .schema.generate import arguments_schema
from .schema.installed import installed_schema, installed_versions

__all__ = [
    "API_VERSION",
    "AdapterFactory",
    "CallbackFactory",
    "Collator",
    "CollatorFactory",
    "DatasetFactory",
    "LossFactory",
    "LossFunction",
    "MakeScheduler",
    "MetricFactory",
    "MetricFunction",
    "ModelFactory",
    "OptimizerFactory",
    "OptimizerSettings",
    "Register",
    "RegisterTask",
    "RewardFactory",
    "RewardFunction",
    "RunTracker",
    "SchedulerFactory",
    "SchedulerSettings",
    "BNB_OPTIMIZERS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_NUM_SAMPLES",
    "BuildContext",
    "PluginError",
    "RecipeRuntimeError",
    "Task",
    "TokenizeSettings",
    "arguments_schema",
    "as_string_column",
    "available_memory",
    "column_dtype",
    "component_name",
    "component_ref",
    "conversation_tokens",
    "datasets_cache_dir",
    "encode_rendered",
    "end_of_turn_ids",
    "free_bytes",
    "generation_settings",
    "hookimpl",
    "hub_unreachable_message",
    "installed_schema",
    "installed_versions",
    "human_bytes",
    "is_integer_feature",
    "is_list_column",
    "prepare_chat_tokenizer",
    "prompt_and_answer",
    "resolve_path",
    "suggest",
    "training_schema",
    "write_json",
    "write_lines",
    "write_text",
]
