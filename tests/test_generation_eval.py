"""Generation-based evaluation of a causal LM (``fturun.run.generation_eval``,
``fturun.builtin.task_answers``): at each evaluation the model answers the prompts of
``generation.eval_rows`` eval rows, scored with ROUGE, BLEU and the exact-match module, logged as
``eval_*`` metrics (returned, in the log history, in MLflow on a real server). A tiny GPT-2 that
memorises four question/answer pairs scores exact match 1.0: the prompt is encoded as it was
trained and the reference is the row's answer."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import MODEL, read_json  # noqa: E402

from fturun.builtin.metrics import load_module  # noqa: E402
from fturun.builtin.task_answers import prompt_and_answer_of  # noqa: E402
from fturun.testing import build_component, check, validate  # noqa: E402

PAIRS = [("what is your name", "my name is bot"), ("do you like tea", "yes i like green tea"),
         ("where do you live", "in a computer"), ("how old are you", "two years old")]
GENERATION_KEYS = ("eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu", "eval_exact_match")


def pairs_recipe(tmp_path, pair_column="response", **sections):
    """A one-layer GPT-2 (MiniLM tokenizer) trained and evaluated on the four :data:`PAIRS`."""
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS))
    source = {"name": "files", "params": {"path": str(rows)}}
    columns = {"text": "prompt", "text_pair": pair_column} if pair_column else {"text": "prompt"}
    recipe = {
        "task": "causal-lm",
        "data": {"train": source, "eval": source, "columns": columns, "max_length": 24},
        "model": {"name": "from_config", "params": {"tokenizer": MODEL, "config": {
            "model_type": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2, "n_positions": 64}}},
        "generation": {"max_new_tokens": 8, "eval_rows": 3, "num_samples": 0},
        "training": {"max_steps": 60, "learning_rate": 5e-3, "per_device_train_batch_size": 4,
                     "logging_steps": 10, "eval_strategy": "steps", "eval_steps": 30,
                     "save_strategy": "no", "report_to": "none",
                     "output_dir": str(tmp_path / "out")},
        "tracking": {"enabled": False},
    }
    recipe.update(sections)
    return recipe


# --------------------------------------------------------------------------------------------
# the exact-match module


def test_exact_match_on_known_strings():
    module = load_module("exact_match")
    predictions = ["Hello, world!", "don ' t stop", "my name is bot", "  two   years old ", ""]
    references = ["hello world", "Don't stop.", "my name is a bot", "two years old", ""]
    # words (default): case, punctuation and spacing ignored; "a" is a word
    assert module.compute(predictions=predictions, references=references) == \
        {"exact_match": pytest.approx(4 / 5)}
    assert module.compute(predictions=predictions, references=references,
                          normalize="whitespace") == {"exact_match": pytest.approx(2 / 5)}
    assert module.compute(predictions=predictions, references=references,
                          normalize="none") == {"exact_match": pytest.approx(1 / 5)}


def test_exact_match_is_a_registered_metric(registry):
    metric = build_component(registry, "metric", {"name": "exact_match",
                                                  "params": {"normalize": "none"}})
    assert metric(["a b", "c"], ["a b", "C"]) == {"exact_match": 0.5}
    with pytest.raises(AssertionError, match="normalize"):
        build_component(registry, "metric", {"name": "exact_match",
                                             "params": {"normalize": "lower"}})


# --------------------------------------------------------------------------------------------
# rows -> (prompt, answer)


def test_a_row_becomes_its_prompt_and_answer():
    from transformers import AutoTokenizer

    from fturun.chat.templates import prepare_chat_tokenizer
    from fturun.recipe.paths import resolve_path

    row = {"text": "what is your name", "text_pair": "my name is bot"}
    assert prompt_and_answer_of(row, None, chat=False) == ("what is your name", "my name is bot")
    assert prompt_and_answer_of({"text": "just some text"}, None, chat=False) is None
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(MODEL))
    prepare_chat_tokenizer(tokenizer, {"data": {"format": "messages",
                                                "chat_template": "chatml"}}, ".")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "who are you"},
                {"role": "assistant", "content": "a bot"}]
    prompt, answer = prompt_and_answer_of({"messages": messages}, tokenizer, chat=True)
    assert answer == "a bot"  # the last assistant turn; the prompt ends with the generation prompt
    assert "who are you" in prompt and "a bot" not in prompt and \
        prompt.rstrip().endswith("assistant")
    assert prompt_and_answer_of({"messages": messages[:1]}, tokenizer, chat=True) is None


# --------------------------------------------------------------------------------------------
# the run


@pytest.mark.slow
def test_generated_answers_are_scored_at_each_evaluation(cli, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    recipe = pairs_recipe(tmp_path, tracking={
        "tracking_uri": mlflow_server, "experiment": "test-generation-eval",
        "log_model": False, "system_metrics": False})
    recipe["training"].update(save_strategy="steps", save_steps=30, load_best_model_at_end=True,
                              metric_for_best_model="exact_match")
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    code, out, err = cli(path)
    assert code == 0, err
    # bounded: 3 of the 4 eval rows are answered at each of the two evaluations
    assert (out + err).count("generation eval on 3 eval rows: eval_rouge1=") == 2
    results = read_json(tmp_path / "out" / "eval_results.json")
    # the model memorised the pairs: every answer is generated exactly
    assert results["eval_exact_match"] == 1.0 and results["eval_rouge1"] == 1.0
    assert results["eval_bleu"] == pytest.approx(1.0)
    state = read_json(tmp_path / "out" / "trainer_state.json")
    # the best checkpoint is chosen by the generated answers' exact match
    assert state["best_metric"] == 1.0 and state["best_model_checkpoint"].endswith("checkpoint-60")
    history = state["log_history"]
    evaluations = [entry for entry in history if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [30, 60]
    for entry in evaluations:
        assert set(GENERATION_KEYS) <= set(entry)
        assert entry["eval_exact_match"] * 3 == pytest.approx(round(entry["eval_exact_match"] * 3))
    run_id = json.loads((tmp_path / "out" / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(mlflow_server)
    for key in GENERATION_KEYS:
        assert [m.step for m in client.get_metric_history(run_id, key)] == [30, 60], key
    assert client.get_metric_history(run_id, "eval_exact_match")[-1].value == 1.0


@pytest.mark.run  # trains in this process
def test_the_evaluation_is_bounded_and_only_for_rows_with_answers(registry, tmp_path):
    recipe = pairs_recipe(tmp_path, generation={"max_new_tokens": 4, "eval_rows": 2})
    result = check(recipe, registry)
    callback = result.build.trainer_kwargs["callbacks"][0]
    assert type(callback).__name__ == "GenerationEval" and len(callback.rows) == 2
    assert "generation eval on 2 eval rows" in result.output
    # check's eval batch carries the scores
    shown = next(line for line in result.output.splitlines() if "one eval batch ran" in line)
    for key in GENERATION_KEYS:
        assert f"'{key}'" in shown, key
    # plain text rows have no answers: no scores; eval_rows 0: no generation eval at all
    plain = check(pairs_recipe(tmp_path, pair_column=None), registry)
    assert "eval_exact_match" not in plain.output and "eval_loss" in plain.output
    off = check(pairs_recipe(tmp_path, generation={"eval_rows": 0}), registry)
    assert not any(type(c).__name__ == "GenerationEval"
                   for c in off.build.trainer_kwargs["callbacks"])


def test_the_best_model_may_be_chosen_by_exact_match(registry, tmp_path):
    best = {"load_best_model_at_end": True, "metric_for_best_model": "exact_match",
            "eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 30,
            "save_steps": 30, "output_dir": str(tmp_path / "out")}
    assert validate(pairs_recipe(tmp_path, training=best), registry) == []
    off = pairs_recipe(tmp_path, training=best, generation={"eval_rows": 0})
    problems = [str(p) for p in validate(off, registry)]
    assert any("$.training.metric_for_best_model" in p and "'exact_match' is not a metric this "
               "recipe computes" in p for p in problems), problems
