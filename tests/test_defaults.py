"""Speed defaults (fturun/engine/speed_defaults.py): each is chosen with its reason for the device
described,
applied only where the recipe leaves its key unset, printed in the plan and the run's console,
recorded in engine.json and MLflow, and switched off by setting the key. CUDA choices are tested
with described devices (this machine has no GPU); the rest with real runs of a tiny recipe."""

from __future__ import annotations

import json

import pytest

from fturun.engine.hardware import Hardware
from fturun.engine.speed_defaults import (
    FTURUN,
    LIBRARY,
    RECIPE,
    apply_defaults,
    arrow_lengths,
    choose_defaults,
)
from fturun.testing import check, tiny_recipe

CPU = Hardware()
A100 = Hardware(cuda=True, gpus=1, gpu_name="NVIDIA A100", capability=(8, 0), bf16=True,
                environ={})
T4 = Hardware(cuda=True, gpus=1, gpu_name="Tesla T4", capability=(7, 5), bf16=False, environ={})
COLUMNS = ["input_ids", "attention_mask", "labels"]
DYNAMIC = {"data": {"max_length": 64}}


def chosen(choices) -> dict:
    return {c.key.removeprefix("training."): c.value for c in choices if c.source == FTURUN}


def by_key(choices) -> dict:
    return {c.key: c for c in choices}


def test_cpu_groups_by_length_and_leaves_loader_and_precision_alone():
    choices = choose_defaults(DYNAMIC, {}, CPU, cpus=2, train_columns=COLUMNS, attention="sdpa")
    assert chosen(choices) == {"train_sampling_strategy": "group_by_length",
                               "dataloader_pin_memory": False, "dataloader_num_workers": 0}
    lines = [c.line() for c in choices]
    assert lines[0].startswith("chosen: training.train_sampling_strategy=group_by_length "
                               "because padding is dynamic")
    assert "chosen: training.dataloader_num_workers=0 because there is no GPU" in lines[2]
    attention = by_key(choices)["model.params.attn_implementation"]
    assert (attention.value, attention.source) == ("sdpa", LIBRARY)


def test_ampere_gpu_gets_bf16_tf32_pinned_memory_and_workers():
    choices = choose_defaults(DYNAMIC, {}, A100, cpus=16, train_columns=COLUMNS)
    assert chosen(choices) == {"train_sampling_strategy": "group_by_length", "bf16": True,
                               "tf32": True, "dataloader_pin_memory": True,
                               "dataloader_num_workers": 4,
                               "dataloader_persistent_workers": True}
    reasons = {k: c.reason for k, c in by_key(choices).items()}
    assert "NVIDIA A100 (compute capability 8.0) has bfloat16" in reasons["training.bf16"]
    assert "TF32" in reasons["training.tf32"]
    assert "16 CPUs for 1 process(es): 4 workers" in reasons["training.dataloader_num_workers"]


def test_gpu_without_bfloat16_gets_fp16_and_no_tf32():
    choices = choose_defaults(DYNAMIC, {}, T4, cpus=2, train_columns=COLUMNS)
    values = chosen(choices)
    assert values["fp16"] is True and "bf16" not in values and "tf32" not in values
    assert "Tesla T4 (compute capability 7.5) has no bfloat16" in \
        by_key(choices)["training.fp16"].reason
    assert values["dataloader_num_workers"] == 1  # 2 CPUs: one left to the training loop


@pytest.mark.parametrize("cpus,processes,workers", [(16, 8, 1), (8, 8, 0), (64, 2, 4)])
def test_loader_workers_are_sized_to_the_cpus_of_each_process(cpus, processes, workers):
    gpu = Hardware(cuda=True, gpus=8, gpu_name="H100", capability=(9, 0), bf16=True,
                   environ={"LOCAL_WORLD_SIZE": str(processes)})
    values = chosen(choose_defaults(DYNAMIC, {}, gpu, cpus=cpus, train_columns=COLUMNS))
    assert values["dataloader_num_workers"] == workers
    assert values.get("dataloader_persistent_workers", False) is (workers > 0)


@pytest.mark.parametrize("hw,key,value", [
    (CPU, "train_sampling_strategy", "random"),
    (CPU, "dataloader_pin_memory", True),
    (CPU, "dataloader_num_workers", 1),
    (A100, "bf16", False),
    (A100, "fp16", True),
    (A100, "tf32", False),
    (A100, "dataloader_pin_memory", False),
    (A100, "dataloader_num_workers", 0),
    (T4, "fp16", False),
])
def test_setting_the_key_in_the_recipe_turns_the_default_off(hw, key, value):
    recipe = {**DYNAMIC, "training": {key: value}}
    choices = choose_defaults(recipe, {key: value}, hw, cpus=8, train_columns=COLUMNS)
    kept = [c for c in choices if c.source == RECIPE]
    assert [(c.key, c.value) for c in kept] == [(f"training.{key}", value)]
    assert kept[0].line().startswith(f"kept: training.{key}=")
    assert "the recipe sets" in kept[0].reason
    args = {key: value}
    applied = apply_defaults(args, choices)
    assert args[key] == value and key not in applied
    if key in ("bf16", "fp16"):  # one precision choice: neither is added
        assert "bf16" not in applied and "fp16" not in applied
    if key == "dataloader_num_workers" and value == 0:  # no workers to keep alive
        assert "dataloader_persistent_workers" not in applied


def test_model_attention_set_in_the_recipe_is_kept():
    model = {"name": "pretrained", "params": {"attn_implementation": "eager"}}
    recipe = {**DYNAMIC, "model": model}
    choice = by_key(choose_defaults(recipe, {}, A100, cpus=8, train_columns=COLUMNS,
                                    attention="eager"))["model.params.attn_implementation"]
    assert (choice.value, choice.source) == ("eager", RECIPE)


@pytest.mark.parametrize("data,columns", [
    ({"padding": "max_length"}, COLUMNS),  # every row as long as the longest
    ({"packing": True}, COLUMNS),
    ({"block_size": 128}, COLUMNS),
    ({}, None),  # a streamed dataset: no length, no sampler
    ({}, ["pixel_values", "labels"]),  # nothing to measure
])
def test_no_length_grouping_without_dynamic_padding(data, columns):
    choices = choose_defaults({"data": data}, {}, A100, cpus=8, train_columns=columns)
    assert "train_sampling_strategy" not in chosen(choices)


@pytest.mark.parametrize("recipe,dtype", [({"deepspeed": {"zero_optimization": {}}}, "float32"),
                                          ({}, "bfloat16")])
def test_no_precision_default_under_deepspeed_or_for_a_half_precision_model(recipe, dtype):
    values = chosen(choose_defaults({**DYNAMIC, **recipe}, {}, A100, cpus=8,
                                    train_columns=COLUMNS, model_dtype=dtype))
    assert "bf16" not in values and "fp16" not in values and values["tf32"] is True


def test_loader_workers_turn_off_tokenizers_threads_in_the_forks(monkeypatch):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    args = {"seed": 1}
    applied = apply_defaults(args, choose_defaults(DYNAMIC, args, A100, cpus=16,
                                                   train_columns=COLUMNS))
    assert applied["dataloader_num_workers"] == 4 and args["bf16"] is True
    import os

    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_arrow_lengths_follow_the_rows_of_a_selected_shuffled_dataset():
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[1] * (i % 7 + 1) for i in range(50)]})
    view = ds.shuffle(seed=3).select(range(10, 40))
    assert arrow_lengths(view) == [len(row) for row in view["input_ids"]]
    assert arrow_lengths(view, "missing") is None and arrow_lengths([[1]]) is None


def test_check_prints_and_applies_the_defaults(registry, tmp_path):
    result = check(tiny_recipe(tmp_path), registry)
    args = result.trainer.args
    assert args.train_sampling_strategy == "group_by_length"
    assert args.dataloader_pin_memory is False
    assert "  defaults: chosen: training.train_sampling_strategy=group_by_length because " \
           "padding is dynamic" in result.output
    assert "chosen: model.params.attn_implementation=sdpa because" in result.output
    # the Trainer's length groups (same seed: the same batches), drawn in a shuffled order
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from fturun.engine.speed_defaults import ShuffledLengthGroups

    dataset = result.trainer._remove_unused_columns(result.trainer.train_dataset)
    assert isinstance(result.trainer._get_train_sampler(dataset), ShuffledLengthGroups)
    lengths = [len(row) for row in dataset["input_ids"]] * 20  # 240 rows: several batches
    torch.manual_seed(7)
    ours = list(ShuffledLengthGroups(lengths, 4))
    torch.manual_seed(7)
    theirs = get_length_grouped_indices(lengths, 4)
    assert sorted(ours) == list(range(len(lengths))) and ours != theirs

    def batches(order):
        return [tuple(order[i:i + 4]) for i in range(0, len(order), 4)]

    assert ours[:4] == theirs[:4]  # the longest batch first
    assert sorted(batches(ours)) == sorted(batches(theirs))


def test_check_keeps_the_recipes_sampling_strategy(registry, tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["training"]["train_sampling_strategy"] = "random"
    result = check(recipe, registry)
    assert result.trainer.args.train_sampling_strategy == "random"
    assert "kept: training.train_sampling_strategy=random because the recipe sets it " \
           "(fturun's default group_by_length" in result.output


@pytest.mark.slow
def test_run_records_the_defaults_in_engine_json_and_mlflow(run_fturun, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    recipe = tiny_recipe(tmp_path)
    recipe["tracking"] = {"tracking_uri": mlflow_server, "experiment": "test-defaults"}
    recipe["output"] = {"save_model": False}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    done = run_fturun(path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "  chosen: training.train_sampling_strategy=group_by_length because" in done.stdout
    out = tmp_path / "outputs"
    engine = json.loads((out / "engine.json").read_text())
    records = {d["key"]: d for d in engine["defaults"]}
    assert records["training.train_sampling_strategy"]["value"] == "group_by_length"
    assert records["training.dataloader_pin_memory"]["source"] == "fturun"
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    run = MlflowClient(tracking_uri=mlflow_server).get_run(run_id)
    assert run.data.tags["fturun.default.training.train_sampling_strategy"] == \
        "group_by_length (chosen by fturun)"  # short: it reads whole in the UI's tag list
    assert run.data.params["default.training.train_sampling_strategy"] == "group_by_length"
    assert run.data.params["args.train_sampling_strategy"] == "group_by_length"
