"""fturun-trl: preference tuning through TRL, as a fturun plugin.

This module is what the ``fturun`` entry point names (``trl = "fturun_trl"``): it holds the
``@hookimpl`` functions and the params schemas, and imports nothing heavy (``fturun validate``
and ``fturun plugins`` read it); TRL, torch and datasets are imported inside the factories.

- task ``preference``: rows of ``prompt``, ``chosen``, ``rejected`` text, trained by TRL's
  ``DPOTrainer`` with a ``DPOConfig``; DPO's own settings (``beta``, ``loss_type``, ...) are
  written in ``training`` and validated by a schema generated from the installed TRL
  (``dpo_settings.schema.json``, :mod:`fturun_trl.settings`)
- collator ``preference``: TRL's ``DataCollatorForPreference`` (the task's default)
- dataset ``preference_pairs``: pairs from chatterbot-style conversation files, the real
  answer chosen and, seeded, another question's answer rejected
"""

from __future__ import annotations

from fturun.api import Task, hookimpl

from . import grpo, kto, reward_model
from .datasets import PAIRS_SCHEMA, load_preference_pairs
from .settings import installed_settings
from .task import TRAINER_METRICS, metric_inputs, preference_collator, tokenize

__version__ = "0.1.0"

#: the fturun plugin API versions this plugin works with: 1.1 lets a task bring its own Trainer,
#: 1.2 gives its settings schema for the installed TRL, 1.3 the reward kind and the tasks that
#: take rewards and keep the rows' columns, 1.4 the trained model a reward names (models:/...)
FTURUN_API = ">=1.4,<2"


def trainer_classes():
    """``(Trainer class, TrainingArguments class)`` of the preference task (TRL imported
    here)."""
    from .trainer import PreferenceConfig, PreferenceTrainer

    return PreferenceTrainer, PreferenceConfig


def preference_task() -> Task:
    """The ``preference`` task record."""
    return Task(
        name="preference",
        description="preference tuning of a causal LM on prompt/chosen/rejected pairs (TRL DPO)",
        model_class="AutoModelForCausalLM",
        peft_task_type="CAUSAL_LM",
        trainer=trainer_classes,
        training_settings=installed_settings(),
        trainer_metrics=TRAINER_METRICS,
        columns=("prompt", "chosen", "rejected"),
        default_collator="preference",
        tokenize=tokenize,
        metric_inputs=metric_inputs,
        pipeline_task="text-generation",
    )


def grpo_classes():
    """``(Trainer class, TrainingArguments class)`` of the grpo task (TRL imported here)."""
    from .grpo_trainer import GroupConfig, GroupTrainer

    return GroupTrainer, GroupConfig


def grpo_task() -> Task:
    """The ``grpo`` task record."""
    return Task(
        name="grpo",
        description="reinforcement learning of a causal LM on prompts, scored by the recipe's "
                    "rewards (TRL GRPO)",
        model_class="AutoModelForCausalLM",
        peft_task_type="CAUSAL_LM",
        trainer=grpo_classes,
        training_settings=installed_settings("grpo"),
        trainer_metrics=grpo.TRAINER_METRICS,
        columns=("prompt",),
        keep_columns=True,
        takes_rewards=True,
        data_keys={"format", "chat_template"},
        default_collator="rows",
        prepare=grpo.prepare,
        tokenize=grpo.tokenize,
        metric_inputs=grpo.metric_inputs,
        pipeline_task="text-generation",
    )


def reward_model_classes():
    """``(Trainer class, TrainingArguments class)`` of the reward_model task."""
    from .reward_trainer import ScoreConfig, ScoreTrainer

    return ScoreTrainer, ScoreConfig


def reward_model_task() -> Task:
    """The ``reward_model`` task record."""
    return Task(
        name="reward_model",
        description="a reward model (one score per text) trained on prompt/chosen/rejected "
                    "pairs (TRL RewardTrainer)",
        model_class="AutoModelForSequenceClassification",
        peft_task_type="SEQ_CLS",
        trainer=reward_model_classes,
        training_settings=installed_settings("reward"),
        trainer_metrics=reward_model.TRAINER_METRICS,
        columns=("prompt", "chosen", "rejected"),
        default_collator="reward_pairs",
        prepare=reward_model.prepare,
        tokenize=reward_model.tokenize,
        metric_inputs=reward_model.metric_inputs,
        pipeline_task="text-classification",
    )


def kto_classes():
    """``(Trainer class, TrainingArguments class)`` of the kto task."""
    from .kto_trainer import UnpairedConfig, UnpairedTrainer

    return UnpairedTrainer, UnpairedConfig


def kto_task() -> Task:
    """The ``kto`` task record."""
    return Task(
        name="kto",
        description="preference tuning of a causal LM on unpaired prompt/completion rows "
                    "labelled desirable or not (TRL KTO)",
        model_class="AutoModelForCausalLM",
        peft_task_type="CAUSAL_LM",
        trainer=kto_classes,
        training_settings=installed_settings("kto"),
        trainer_metrics=kto.TRAINER_METRICS,
        columns=("prompt", "completion"),
        keep_columns=True,
        default_collator="unpaired",
        prepare=kto.prepare,
        tokenize=kto.tokenize,
        metric_inputs=kto.metric_inputs,
        pipeline_task="text-generation",
    )


@hookimpl
def fturun_register_tasks(register):
    register(preference_task())
    register(grpo_task())
    register(reward_model_task())
    register(kto_task())


@hookimpl
def fturun_register_rewards(register):
    register("reward_model", reward_model.reward_model, reward_model.REWARD_MODEL_SCHEMA,
             "the score a reward model gives the prompt and completion (params.model: "
             "models:/NAME@ALIAS of a reward_model run, its run id, or its model/ folder)")


@hookimpl
def fturun_register_collators(register):
    register("preference", preference_collator, {"type": "object", "properties": {}},
             "preference pairs: prompt+chosen and prompt+rejected rows padded, with a "
             "completion mask (TRL's DataCollatorForPreference)")
    register("reward_pairs", reward_model.pairs_collator, {"type": "object", "properties": {}},
             "reward-model pairs: prompt+chosen and prompt+rejected texts, padded (TRL's "
             "reward DataCollatorForPreference)")
    register("unpaired", kto.unpaired_collator, {"type": "object", "properties": {}},
             "unpaired rows: prompt+completion padded with a completion mask, their KL rows "
             "and labels (TRL's DataCollatorForUnpairedPreference)")
    register("rows", grpo.rows_collator, {"type": "object", "properties": {}},
             "the rows as they are, for a Trainer that tokenizes and generates itself (grpo)")


@hookimpl
def fturun_register_datasets(register):
    register("preference_pairs", load_preference_pairs, PAIRS_SCHEMA,
             "prompt/chosen/rejected pairs from conversation files: the real answer chosen, "
             "another question's answer rejected (seeded)")
