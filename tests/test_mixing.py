"""Weighted mixing of several ``data.train`` sources (``fturun.data.mixing``): the realised mix
follows the weights on a real ``datasets.interleave_datasets`` of the packaged chatterbot corpus,
is the same for the same seed, ends as its stopping strategy says, is printed in the plan, and
logs every source as its own MLflow dataset input on a real server. Bad mixes are located
errors before anything loads."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import MODEL  # noqa: E402

from fturun.core.errors import RecipeRuntimeError  # noqa: E402
from fturun.data import prepare_datasets  # noqa: E402
from fturun.testing import check, make_context  # noqa: E402

ENGLISH = "package:chatterbot_corpus/data/english/"
SMALL_TALK = {"name": "conversations", "params": {"path": [
    ENGLISH + name for name in ("conversations.yml", "emotion.yml", "humor.yml", "ai.yml",
                                "psychology.yml")]}}
TECH = {"name": "conversations", "params": {"path": ENGLISH + "tech_support.yml"}}
TINY_GPT2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}


def mix_data(weights=(3, 1), max_rows=(None, 150), **data):
    """A ``data`` section mixing the small-talk categories and the tech-support questions."""
    entries = []
    for source, weight, rows in zip((SMALL_TALK, TECH), weights, max_rows):
        entry = {"dataset": source, "weight": weight}
        if rows is not None:
            entry["max_rows"] = rows
        entries.append(entry)
    return {"train": entries, "columns": {"text": "prompt", "text_pair": "response"}, **data}


def mix_recipe(tmp_path, **data):
    """A tiny causal-LM recipe (one-layer GPT-2 from a config, MiniLM tokenizer) on a mix."""
    return {
        "task": "causal-lm",
        "data": mix_data(**data) | {"split": {"eval": 8}, "max_length": 32},
        "model": {"name": "from_config", "params": {"tokenizer": MODEL, "config": TINY_GPT2}},
        "generation": {"eval_rows": 0, "num_samples": 0},
        "training": {"max_steps": 1, "per_device_train_batch_size": 4, "logging_steps": 1,
                     "report_to": "none", "save_strategy": "no",
                     "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": False},
    }


def prepared(registry, data, seed=42):
    """``(splits, context)`` of ``data`` through the real data pipeline (no tokenizer)."""
    context = make_context(recipe={"task": "causal-lm", "data": data}, task="causal-lm",
                           seed=seed)
    return prepare_datasets(data, registry, context), context


def test_the_mix_follows_the_weights_and_the_seed(registry):
    splits, context = prepared(registry, mix_data())
    mix = context.train_mix
    small, tech = mix.sources
    assert mix.stopping_strategy == "first_exhausted" and mix.seed == 42
    # first_exhausted: the mix ends when the tech-support rows (150 of them) run out
    assert tech.taken == tech.available == 150 and small.taken < small.available
    assert mix.rows == small.taken + tech.taken == len(splits["train"])
    assert small.share == 0.75 and tech.share == 0.25
    assert abs(small.taken / mix.rows - 0.75) < 0.05  # binomial sd ~0.014 at ~600 rows
    # each source's rows are the ones the mix took from it, as its own dataset
    assert len(tech.rows) == 150
    assert set(tech.rows["text_pair"]) <= set(splits["train"]["text_pair"])
    # the same seed gives the same mix; another seed another
    again, _ = prepared(registry, mix_data())
    assert again["train"]["text"] == splits["train"]["text"]
    other, _ = prepared(registry, mix_data(), seed=7)
    assert other["train"]["text"] != splits["train"]["text"]
    assert any("data.train mix: data.train[1]" in m and "150 rows" in m
               for m in context.messages)


def test_weights_change_the_shares(registry):
    _, context = prepared(registry, mix_data(weights=(1, 1), max_rows=(None, None)))
    small, tech = context.train_mix.sources
    realised = small.taken / context.train_mix.rows
    assert abs(realised - 0.5) < 0.05, realised
    # first_exhausted: the smaller source (small talk, ~500 rows) is used whole, no row twice
    assert small.taken == small.available < tech.available
    assert tech.taken <= tech.available


def test_all_exhausted_uses_every_source_whole_and_repeats_the_small_one(registry):
    data = mix_data(weights=(1, 3), max_rows=(100, 120), stopping_strategy="all_exhausted")
    splits, context = prepared(registry, data)
    small, tech = context.train_mix.sources
    assert context.train_mix.stopping_strategy == "all_exhausted"
    assert small.taken >= small.available == 100 and tech.taken >= tech.available == 120
    assert small.taken > small.available or tech.taken > tech.available  # rows repeat
    assert len(set(splits["train"]["text"])) < len(splits["train"])
    assert abs(small.taken / context.train_mix.rows - 0.25) < 0.07


@pytest.mark.slow
def test_the_plan_prints_the_realised_rows(registry, tmp_path):
    result = check(mix_recipe(tmp_path), registry)
    mix = result.build.context.train_mix
    plan = result.output.splitlines()
    start = next(i for i, line in enumerate(plan) if line.startswith("  mix:"))
    lines = plan[start:start + 3]
    assert lines[0].startswith("  mix:      2 sources mixed by weight, stopping strategy "
                               "'first_exhausted' (seed 42)")
    assert f"{mix.rows:,} rows before the eval/test splits" in lines[0]
    small, tech = mix.sources
    assert f"data.train[0] conversations ({ENGLISH}conversations.yml and 4 more): " \
        f"{small.taken:,} rows" in lines[1]
    assert "weight 3 = 75.0%" in lines[1]
    assert f"data.train[1] conversations ({ENGLISH}tech_support.yml): 150 rows" in lines[2]
    assert "of 150 available" in lines[2]


@pytest.mark.slow
def test_every_source_is_an_mlflow_dataset_input(cli, mlflow_server, tmp_path, registry):
    from mlflow.tracking import MlflowClient

    recipe = mix_recipe(tmp_path)
    recipe["tracking"] = {"tracking_uri": mlflow_server, "experiment": "test-mixing",
                          "log_model": False, "system_metrics": False}
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(recipe))
    code, out, err = cli(path)
    assert code == 0, err
    run_id = json.loads((tmp_path / "out" / "mlflow_run.json").read_text())["run_id"]
    inputs = MlflowClient(mlflow_server).get_run(run_id).inputs.dataset_inputs
    # each named after its source: "<source>/<split>"
    by_name = {i.dataset.name.rsplit("/", 1)[1]: i for i in inputs}
    assert set(by_name) == {"train", "eval", "train[0]", "train[1]"}
    assert by_name["train"].dataset.name == "mix/train"
    assert by_name["train[1]"].dataset.name == "tech_support/train[1]"
    _, context = prepared(registry, recipe["data"])  # the same mix, realised again
    for source in context.train_mix.sources:
        logged = by_name[f"train[{source.index}]"]
        assert json.loads(logged.dataset.profile)["num_rows"] == source.taken
        assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "train"
    assert "tech_support.yml" in by_name["train[1]"].dataset.source
    assert json.loads(by_name["train"].dataset.profile)["num_rows"] == \
        context.train_mix.rows - 8  # the 8 eval rows are carved out of the mix


# --------------------------------------------------------------------------------------------
# bad mixes: located errors before anything loads


def validate_out(cli, tmp_path, data, command="validate"):
    recipe = mix_recipe(tmp_path)
    recipe["data"] = data
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recipe, indent=1))
    args = ["validate", path] if command == "validate" else [path]
    code, out, err = cli(*args)
    return code, out + err


@pytest.mark.parametrize("weight", [0, -1.5])
def test_a_weight_not_above_0_is_a_located_error(cli, tmp_path, weight):
    data = mix_data(weights=(2, weight))
    code, text = validate_out(cli, tmp_path, data)
    assert code == 2
    assert "$.data.train[1].weight (line " in text
    assert f"must be > 0, got {weight}; give the source a positive weight" in text
    # a run refuses it before any data or model loads: no output folder, no traceback
    code, text = validate_out(cli, tmp_path, data, command="run")
    assert code == 2 and "$.data.train[1].weight" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_no_sources_and_misplaced_keys_are_located_errors(cli, tmp_path):
    code, text = validate_out(cli, tmp_path, {"train": [], "columns": {"text": "prompt"}})
    assert code == 2
    assert "$.data.train (line" in text and "should be non-empty; list at least one source" \
        in text
    single = {"train": TECH, "stopping_strategy": "all_exhausted"}
    code, text = validate_out(cli, tmp_path, single)
    assert code == 2 and "$.data.stopping_strategy" in text and \
        "data.stopping_strategy is for a mix" in text
    typo = mix_data()
    typo["train"][0]["wieght"] = typo["train"][0].pop("weight")
    code, text = validate_out(cli, tmp_path, typo)
    assert "$.data.train[0].wieght" in text and "did you mean 'weight'" in text
    assert "$.data.train[0] (line" in text and "missing required key 'weight'" in text
    bare = mix_data()
    bare["train"][1]["dataset"] = "conversations"
    code, text = validate_out(cli, tmp_path, bare)
    assert "$.data.train[1].dataset" in text and "needs params path" in text


def test_a_source_without_the_columns_names_itself(registry, tmp_path):
    rows = tmp_path / "plain.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(5)))
    data = mix_data()
    data["train"][1]["dataset"] = {"name": "files", "params": {"path": str(rows)}}
    with pytest.raises(RecipeRuntimeError, match=r"data\.train\[1\]: text_pair column "
                                                 r"'response' not found"):
        prepared(registry, data)


def test_the_hub_check_sees_every_source():
    from fturun.engine.hub import recipe_hub_names

    data = {"data": {"train": [{"dataset": TECH, "weight": 1},
                               {"dataset": {"name": "hub", "params": {"path": "org/chats"}},
                                "weight": 1}]}}
    assert recipe_hub_names(data) == [("data.train[1].dataset.params.path", "dataset",
                                       "org/chats")]
