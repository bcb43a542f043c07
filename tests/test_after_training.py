"""After training, against a real `mlflow server`: `fturun evaluate` of a registered alias and
of a checkpoint reproduces the training run's final eval metrics on the same data and differs
on another eval file, linked to the model; `fturun predict` on a CSV and on stdin for a
classifier, a tagger and a chat causal LM, checked against independent computations;
`fturun chat` driven through stdin; `fturun diff` of a run and its rerun; `fturun explain`;
and the bad inputs (unknown REF, a missing column, a model of another task): exit 2 with a
clear message. The training runs are tiny and shared by the module."""

import io
import json
import sys

import pytest
from helpers import RECIPES, call_cli

TINY_CLS = ["data.max_train_samples=24", "data.max_eval_samples=12", "data.max_length=32",
            "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
            "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1",
            "training.per_device_train_batch_size=8", "tracking.system_metrics=false"]
NAME = "after-training-cls"
LABELS = {"business", "entertainment", "politics", "sports", "tech"}
TEXTS = ["Shares rose as the bank reported record profits", "The striker scored twice"]


def _cli(capsys, *args):
    return call_cli(capsys, *args)


def _run_id(out):
    return json.loads((out / "mlflow_run.json").read_text())["run_id"]


@pytest.fixture(scope="module")
def cls_run(mlflow_server, tmp_path_factory):
    """A tiny LoRA classifier run, promoted as NAME@champion; ``(client, run, out, recipe
    overrides)``."""
    from mlflow.tracking import MlflowClient

    from fturun.cli import main

    out = tmp_path_factory.mktemp("after-cls")
    overrides = TINY_CLS + [f"tracking.tracking_uri={mlflow_server}",
                            "tracking.experiment=test-after"]
    assert main([str(RECIPES / "lora_cls.json"), *overrides,
                 f"training.output_dir={out}"]) == 0
    run_id = _run_id(out)
    assert main(["promote", run_id, "champion", "--name", NAME,
                 "--tracking-uri", mlflow_server]) == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    return client, client.get_run(run_id), out, overrides


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory):
    """A tiny token-classification run (no tracking): its output folder."""
    from fturun.cli import main

    out = tmp_path_factory.mktemp("after-ner")
    assert main([str(RECIPES / "ner_conll.json"), "training.max_steps=2",
                 "training.eval_strategy=no", "training.save_strategy=no",
                 "training.load_best_model_at_end=false", "tracking.enabled=false",
                 f"training.output_dir={out}"]) == 0
    return out


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny chat SFT run (GPT-2 from a config, ChatML template; no tracking)."""
    from fturun.cli import main

    out = tmp_path_factory.mktemp("after-chat")
    assert main([str(RECIPES / "sft_chat.json"), "data.max_train_samples=32",
                 "data.split.eval=8", "training.max_steps=2", "training.eval_strategy=no",
                 "generation.max_new_tokens=6", "generation.eval_rows=0",
                 "tracking.enabled=false", f"training.output_dir={out}"]) == 0
    return out


# ------------------------------------------------------------------------------------------
# evaluate

def _evaluation(out_dir):
    return json.loads((out_dir / "evaluation.json").read_text())


@pytest.mark.slow
def test_evaluate_registered_alias_reproduces_the_final_metrics_and_links_the_model(
        cls_run, mlflow_server, tmp_path, capsys):
    client, run, _, overrides = cls_run
    code, out, err = _cli(capsys, "evaluate", RECIPES / "lora_cls.json", "--model",
                          f"models:/{NAME}@champion", *overrides,
                          "--output-dir", tmp_path / "eval")
    assert code == 0, err
    result = _evaluation(tmp_path / "eval")
    trained = {k: v for k, v in run.data.metrics.items() if k in ("eval_accuracy", "eval_f1",
                                                                   "eval_loss")}
    assert result["same_data"] and result["training_metrics"]["eval_accuracy"] == \
        trained["eval_accuracy"]
    assert result["metrics"]["eval_accuracy"] == trained["eval_accuracy"]
    assert result["metrics"]["eval_f1"] == pytest.approx(trained["eval_f1"], abs=1e-9)
    # the adapter as trained: the same loss (the float32 value MLflow stored)
    assert result["metrics"]["eval_loss"] == pytest.approx(trained["eval_loss"], abs=1e-4)
    assert "at training" in out and "eval_accuracy" in out
    # the evaluation run: tagged, the model linked, the eval data an input, predictions logged
    evaluation = client.get_run(json.loads((tmp_path / "eval" / "mlflow_run.json")
                                           .read_text())["run_id"])
    tags = evaluation.data.tags
    model_id = run.outputs.model_outputs[0].model_id
    assert tags["fturun.evaluation"] == "true" and tags["fturun.evaluated_run"] == \
        run.info.run_id and tags["fturun.evaluated_model_id"] == model_id
    assert [m.model_id for m in evaluation.inputs.model_inputs] == [model_id]
    contexts = {t.value for d in evaluation.inputs.dataset_inputs for t in d.tags
                if t.key == "mlflow.data.context"}
    assert contexts == {"eval"}
    linked = [m for m in client.get_logged_model(model_id).metrics
              if m.run_id == evaluation.info.run_id]
    assert {m.key for m in linked} >= {"eval_accuracy", "eval_loss"}
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id, "evaluation")}
    assert {"evaluation/eval_predictions.jsonl", "evaluation/evaluation.json"} <= artifacts
    code, out, _ = _cli(capsys, "runs", "test-after", "--json", "--tracking-uri", mlflow_server)
    kinds = {row["run_id"]: row["kind"] for row in json.loads(out)}
    assert kinds[evaluation.info.run_id] == "evaluation" and kinds[run.info.run_id] == "run"
    rows = (tmp_path / "eval" / "eval_predictions.jsonl").read_text().splitlines()
    assert len(rows) == 12 and json.loads(rows[0])["prediction"] in LABELS


@pytest.mark.slow
def test_evaluate_checkpoint_matches_its_step_and_another_eval_file_differs(
        cls_run, tmp_path, capsys):
    _, run, out, overrides = cls_run
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    at_2 = next(e for e in state["log_history"] if e.get("step") == 2 and "eval_loss" in e)
    local = [o for o in overrides if not o.startswith("tracking.")] + ["tracking.enabled=false"]
    code, _, err = _cli(capsys, "evaluate", RECIPES / "lora_cls.json", "--model",
                        out / "checkpoint-2", *local, "--output-dir", tmp_path / "ckpt")
    assert code == 0, err
    metrics = _evaluation(tmp_path / "ckpt")["metrics"]
    assert metrics["eval_accuracy"] == at_2["eval_accuracy"]
    assert metrics["eval_loss"] == pytest.approx(at_2["eval_loss"], abs=1e-6)
    # another eval file: other numbers, and no training-time column
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "\n".join(
        f"\"{t}\",{label}" for t, label in [
            ("Parliament debated the new budget late into the night", "politics"),
            ("The film won three awards at the festival", "entertainment"),
            ("A new phone chip doubles battery life", "tech"),
            ("The club signed a young goalkeeper", "sports")]) + "\n")
    code, out_text, err = _cli(capsys, "evaluate", RECIPES / "lora_cls.json", "--model",
                               out / "checkpoint-2", *local,
                               f'data.eval={{"name": "files", "params": {{"path": "{other}"}}}}',
                               "data.split={}", "--output-dir", tmp_path / "other")
    assert code == 0, err
    result = _evaluation(tmp_path / "other")
    assert not result["same_data"] and result["training_metrics"] == {}
    assert result["metrics"]["eval_loss"] != pytest.approx(at_2["eval_loss"], abs=1e-4)
    assert len((tmp_path / "other" / "eval_predictions.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_evaluate_refuses_a_model_of_another_task(cls_run, capsys):
    _, _, out, _ = cls_run
    code, _, err = _cli(capsys, "evaluate", RECIPES / "ner_conll.json", "--model",
                        out / "model", "tracking.enabled=false")
    assert code == 2
    assert "trained for the task 'sequence-classification'" in err and \
        "'token-classification'" in err and "Traceback" not in err


@pytest.mark.slow
def test_evaluate_a_full_model_folder_reproduces_its_run(ner_model, tmp_path, capsys):
    """A full model (no adapter) is loaded from its folder through the pretrained component:
    the same numbers as the run's own final evaluation."""
    trained = json.loads((ner_model / "eval_results.json").read_text())
    code, out, err = _cli(capsys, "evaluate", RECIPES / "ner_conll.json", "--model",
                          ner_model / "model", "tracking.enabled=false",
                          "--output-dir", tmp_path / "ner")
    assert code == 0, err
    result = _evaluation(tmp_path / "ner")
    assert result["same_data"] and result["kind"] == "folder"
    assert result["metrics"]["eval_seqeval_f1"] == trained["eval_seqeval_f1"]
    assert result["metrics"]["eval_loss"] == pytest.approx(trained["eval_loss"], abs=1e-6)
    assert result["training_metrics"]["eval_loss"] == trained["eval_loss"]


def test_unknown_model_ref_is_a_usage_error(capsys, tmp_path):
    code, _, err = _cli(capsys, "predict", tmp_path / "nothing-here", "-")
    assert code == 2 and "model '" in err and "is unknown (no such folder here)" in err
    assert "models:/NAME@ALIAS" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(capsys, "chat", empty)
    assert code == 2 and "a folder without a model: no config.json" in err


@pytest.mark.slow
def test_unknown_run_and_alias_are_usage_errors(mlflow_server, cls_run, capsys):
    code, _, err = _cli(capsys, "predict", "0" * 32, "-", "--tracking-uri", mlflow_server)
    assert code == 2 and f"no run '{'0' * 32}'" in err
    code, _, err = _cli(capsys, "evaluate", RECIPES / "lora_cls.json", "--model",
                        f"models:/{NAME}@nobody", "--tracking-uri", mlflow_server,
                        "tracking.enabled=false")
    assert code == 2 and f"models:/{NAME}@nobody' is not in the registry" in err


# ------------------------------------------------------------------------------------------
# predict

def _lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_predict_classifier_on_csv_and_stdin_matches_the_registered_model(
        cls_run, mlflow_server, tmp_path, capsys, monkeypatch):
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(mlflow_server):
        expected = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(TEXTS)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,text\n" + "".join(f"{i},\"{t}\"\n" for i, t in enumerate(TEXTS)))
    code, _, err = _cli(capsys, "predict", f"models:/{NAME}@champion", rows, "--output",
                        tmp_path / "out.jsonl", "--tracking-uri", mlflow_server)
    assert code == 0, err
    answers = _lines((tmp_path / "out.jsonl").read_text())
    assert [a["row"] for a in answers] == [1, 2]
    assert [a["label"] for a in answers] == list(expected["label"])
    assert [a["score"] for a in answers] == pytest.approx(list(expected["score"]), abs=1e-4)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    code, out, err = _cli(capsys, "predict", cls_run[2] / "model", "-")
    assert code == 0, err
    assert [a["label"] for a in _lines(out)] == list(expected["label"])


@pytest.mark.slow
def test_predict_a_file_with_a_missing_column_names_the_rows(cls_run, tmp_path, capsys):
    rows = tmp_path / "bad.csv"
    rows.write_text("body\nhello\nworld\n")
    code, out, err = _cli(capsys, "predict", cls_run[2] / "model", rows)
    assert code == 2 and out == ""
    assert f"{rows} row 1: no column 'text' (it has: body)" in err and \
        f"{rows} row 2:" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n[1, 2]\n{"text": \n')
    code, _, err = _cli(capsys, "predict", cls_run[2] / "model", bad)
    assert code == 2 and f"{bad} row 2: a JSON list, not an object" in err and \
        f"{bad} row 3: not JSON" in err


@pytest.mark.slow
def test_predict_tagger_on_jsonl_tags_each_word(ner_model, tmp_path, capsys, monkeypatch):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    words = ["Anna", "Kowalczyk", "joined", "Siemens", "in", "Berlin"]
    folder = ner_model / "model"
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ids = model(**batch).logits.argmax(-1)[0].tolist()
    expected, seen = [], set()
    for position, word in enumerate(batch.word_ids(0)):
        if word is not None and word not in seen:
            seen.add(word)
            expected.append(model.config.id2label[ids[position]])
    rows = tmp_path / "rows.jsonl"  # the recipe reads the column 'tokens'
    rows.write_text(json.dumps({"tokens": words}) + "\n" +
                    json.dumps({"tokens": " ".join(words)}) + "\n")
    code, out, err = _cli(capsys, "predict", folder, rows)
    assert code == 0, err
    answers = _lines(out)
    assert [a["tags"] for a in answers] == [expected, expected]
    assert answers[0]["words"] == words
    monkeypatch.setattr(sys, "stdin", io.StringIO(" ".join(words) + "\n"))
    code, out, err = _cli(capsys, "predict", folder, "-")
    assert code == 0 and _lines(out)[0]["tags"] == expected
    code, _, err = _cli(capsys, "predict", folder, tmp_path / "rows.jsonl", "--format", "csv")
    assert code == 2 and "no column 'tokens'" in err and "data.columns.text" in err


def _chat_answer(folder, messages, max_new_tokens=6):
    """The answer generated independently: the tokenizer's own apply_chat_template, greedy,
    stopped at ChatML's end of turn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")  # the template it was trained with
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    stop = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=max_new_tokens, eos_token_id=stop,
                                pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_predict_chat_model_through_its_template(chat_model, tmp_path, capsys, monkeypatch):
    folder = chat_model / "model"
    rows = tmp_path / "questions.csv"
    rows.write_text("text\nWhat is AI?\nDo you like movies?\n")
    code, out, err = _cli(capsys, "predict", folder, rows)
    assert code == 0, err
    expected = [_chat_answer(folder, [{"role": "user", "content": q}])
                for q in ("What is AI?", "Do you like movies?")]
    assert [a["generated"] for a in _lines(out)] == expected
    conversation = [{"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi"},
                    {"role": "user", "content": "Who are you?"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"messages": conversation})))
    code, out, err = _cli(capsys, "predict", folder, "-")
    assert code == 0, err
    assert _lines(out) == [{"row": 1, "generated": _chat_answer(folder, conversation)}]


# ------------------------------------------------------------------------------------------
# chat

@pytest.mark.slow
def test_chat_through_stdin(chat_model, capsys, monkeypatch):
    folder = chat_model / "model"
    script = "Hello\n/system Answer briefly.\nWho are you?\n/reset\nWhat is AI?\n/exit\nNo!\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    code, out, err = _cli(capsys, "chat", folder)
    assert code == 0, err
    answers = [line.removeprefix("assistant: ") for line in out.splitlines()
               if line.startswith("assistant: ")]
    system = {"role": "system", "content": "Answer briefly."}
    first = _chat_answer(folder, [{"role": "user", "content": "Hello"}])
    assert answers == [
        first,
        _chat_answer(folder, [system, {"role": "user", "content": "Who are you?"}]),
        _chat_answer(folder, [system, {"role": "user", "content": "What is AI?"}])]
    assert "(system: Answer briefly.)" in out and "(a new conversation)" in out
    assert len(answers) == 3  # nothing after /exit


@pytest.mark.slow
def test_chat_refuses_a_model_without_a_template(cls_run, capsys):
    code, _, err = _cli(capsys, "chat", cls_run[2] / "model")
    assert code == 2 and "sequence-classification model: fturun chat talks to causal LMs" in err


# ------------------------------------------------------------------------------------------
# diff

@pytest.mark.slow
def test_diff_of_a_run_and_its_rerun_names_the_override(cls_run, mlflow_server, tmp_path,
                                                         capsys):
    client, run, _, _ = cls_run
    code, _, err = _cli(capsys, "rerun", run.info.run_id, "training.learning_rate=0.001",
                        "--tracking-uri", mlflow_server,
                        f"training.output_dir={tmp_path / 'rerun'}")
    assert code == 0, err
    rerun_id = _run_id(tmp_path / "rerun")
    code, out, err = _cli(capsys, "diff", run.info.run_id, rerun_id, "--json",
                          "--tracking-uri", mlflow_server)
    assert code == 0, err
    result = json.loads(out)
    assert result["recipe"] == [{"key": "training.learning_rate", "a": 0.002, "b": 0.001}]
    assert {c["key"] for c in result["bookkeeping"]} >= {"training.output_dir"}
    assert result["data"] == [] and result["environment"] == []
    assert "training.learning_rate=0.001" in result["overrides"]["b"]
    losses = {m["metric"]: m for m in result["metrics"]}
    assert losses["eval_loss"]["delta"] == pytest.approx(
        losses["eval_loss"]["b"] - losses["eval_loss"]["a"])
    code, out, _ = _cli(capsys, "diff", run.info.run_id, rerun_id, "--tracking-uri",
                        mlflow_server)
    assert code == 0 and "  training.learning_rate: 0.002 -> 0.001" in out
    assert "final metrics (A, B, B - A):" in out


def test_diff_of_two_recipes(capsys):
    code, out, err = _cli(capsys, "diff", RECIPES / "lora_cls.json", RECIPES / "full_cls.json",
                          "--json")
    assert code == 0, err
    keys = {c["key"] for c in json.loads(out)["recipe"]}
    assert "adapter.name" in keys and json.loads(out)["environment"] == []
    code, _, err = _cli(capsys, "diff", RECIPES / "lora_cls.json", "not-a-run")
    assert code == 2 and "'not-a-run' is neither a recipe file nor a run id" in err


# ------------------------------------------------------------------------------------------
# explain

def test_explain_names_the_base_file_line_and_the_override(tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text((RECIPES / "lora_cls.json").read_text())
    line = next(n for n, text in enumerate(base.read_text().splitlines(), start=1)
                if '"learning_rate"' in text)
    child = tmp_path / "child.json"
    child.write_text('{\n  "extends": "base.json",\n  "seed": 7\n}\n')
    code, out, err = _cli(capsys, "explain", child, "training.learning_rate")
    assert code == 0, err
    assert out.strip().startswith("training.learning_rate = 0.002  [recipe: ")
    assert f"base.json:{line}:" in out
    code, out, _ = _cli(capsys, "explain", child, "seed")
    assert "child.json:3:" in out
    code, out, _ = _cli(capsys, "explain", child, "training.learning_rate",
                        "training.learning_rate=1e-3")
    assert out.strip() == ("training.learning_rate = 0.001  [override: "
                           "'training.learning_rate=1e-3' on the command line]")
    code, out, _ = _cli(capsys, "explain", child)
    assert "adapter.params.bias = \"none\"  [component default: adapter 'lora'" in out
    assert "training.train_sampling_strategy = \"group_by_length\"  [speed default: padding " \
        "is dynamic" in out
    code, out, _ = _cli(capsys, "explain", child, "training.adam_beta1")
    assert "training.adam_beta1 = 0.9  [Trainer default: TrainingArguments' default" in out
    code, _, err = _cli(capsys, "explain", child, "training.learning_rat")
    assert code == 2 and "did you mean 'training.learning_rate'" in err
