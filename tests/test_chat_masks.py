"""Chat masks from the one full render (issue 28): templates written here reproduce each quirk of
the published ones (reasoning stripped from earlier turns and an empty think block in the last,
EOS after the last turn only, the system text in the last user turn, a refused system role,
date functions, ``{% generation %}`` blocks, a pre-filled ``<think>``, a different end marker on
the last turn, a template that rewrites the content), each with a tokenizer carrying its
family's special tokens (``chat_families.py``).

The expected trained text is written out by hand, per assistant turn: the labels are checked
by decoding each run of trained tokens and comparing it with that text, and every other token
must be ignored (-100); for ``train_on='all'`` every token is trained. Then through fturun's
data pipeline, padded and packed. Every bad input is checked for its message."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from chat_families import family_tokenizer  # noqa: E402
from helpers import call_cli as fturun  # noqa: E402

from fturun.chat.conversation import check_template, conversation_tokens, end_of_turn_ids  # noqa: E402
from fturun.chat.masks import TemplateMaskError  # noqa: E402
from fturun.chat.parity import check_parity, parity_difference  # noqa: E402
from fturun.chat.render import TemplateRefusal  # noqa: E402
from fturun.data import prepare_datasets, tokenize_datasets  # noqa: E402
from fturun.plugin.context import BuildContext  # noqa: E402
from fturun.run.build import build_component  # noqa: E402

IGNORE = -100
SYSTEM = {"role": "system", "content": "You are brief."}
Q1, Q2 = {"role": "user", "content": "What is AI?"}, {"role": "user", "content": "Who made it?"}
PLAIN = [Q1, {"role": "assistant", "content": "A branch of science."},
         Q2, {"role": "assistant", "content": "Many people."}]
WITH_SYSTEM = [SYSTEM, *PLAIN]
THINK = [Q1, {"role": "assistant",
              "content": "<think>\nThey ask.\n</think>\n\nA branch of science."},
         Q2, {"role": "assistant", "content": "<think>People.</think>Many people."}]
CONVERSATIONS = {"plain": PLAIN, "system": WITH_SYSTEM, "think": THINK}

# Qwen3: reasoning stripped from earlier turns, the last turn's re-formatted (an empty block
# when there is none)
THINK_STRIP = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{% set c = m.content %}"
    "{% set r = '' %}{% if '</think>' in c %}"
    "{% set r = c.split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{% set c = c.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "{% if loop.last %}<|im_start|>assistant\n<think>\n{{ r }}\n</think>\n\n{{ c }}"
    "{% else %}<|im_start|>assistant\n{{ c }}{% endif %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Phi-3.5: the EOS after a render without a generation prompt, so after the last turn only
EOS_LAST = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}")
# Mistral-Nemo: the system text joins the user turn that is the last message (so never in a
# training render); the turn ends with EOS; no generation prompt
SYSTEM_LAST_USER = (
    "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}"
    "{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}{{ bos_token }}"
    "{% for m in msgs %}{% if m.role == 'user' %}{% if loop.last and sys is defined %}"
    "[INST]{{ sys }}\n\n{{ m.content }}[/INST]{% else %}[INST]{{ m.content }}[/INST]{% endif %}"
    "{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}")
# Gemma 2: no system role (raise_exception), contents trimmed, 'model' for the assistant
SYSTEM_REFUSED = (
    "{{ bos_token }}{% if messages[0].role == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}{% set role = 'model' if m.role == 'assistant' else m.role %}"
    "<start_of_turn>{{ role }}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# Llama 3.2: today's date in the system header, contents trimmed
DATED = (
    "{{ bos_token }}<|start_header_id|>system<|end_header_id|>\n\nToday Date: "
    "{{ strftime_now('%d %b %Y') }}\n\n{% if messages[0].role == 'system' %}"
    "{{ messages[0].content | trim }}{% endif %}<|eot_id|>{% for m in messages %}"
    "{% if m.role != 'system' %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
    "{{ m.content | trim }}<|eot_id|>{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
# SmolLM3 (Hub original): {% generation %} blocks, here taking the newline after the marker too
GENERATION = (
    "{% for m in messages %}{% if m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ m.content }}<|im_end|>\n{% endgeneration %}{% else %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# QwQ: reasoning stripped from earlier turns; the generation prompt pre-fills <think>
PREFILL = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{% set c = m.content %}"
    "{% if not loop.last %}{% set c = c.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "<|im_start|>assistant\n{{ c }}<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n"
    "{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
# gpt-oss: a channel header the model writes, <|return|> after the last turn, <|end|> before
LAST_MARKER = (
    "{% for m in messages %}{% if m.role == 'assistant' %}"
    "<|start|>assistant<|channel|>final<|message|>{{ m.content }}"
    "{% if loop.last and not add_generation_prompt %}<|return|>{% else %}<|end|>{% endif %}"
    "{% else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}")
# a template that rewrites the assistant's content: nothing to find
REWRITES = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | upper }}"
            "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% endif %}")

A1, A2 = "A branch of science.", "Many people."
#: template -> (family, {conversation: the trained text of each assistant turn}); None: refused
CASES = {
    "think_strip": (THINK_STRIP, "qwen", {
        "plain": [f"{A1}<|im_end|>", f"<think>\n\n</think>\n\n{A2}<|im_end|>"],
        "system": [f"{A1}<|im_end|>", f"<think>\n\n</think>\n\n{A2}<|im_end|>"],
        "think": [f"{A1}<|im_end|>", f"<think>\nPeople.\n</think>\n\n{A2}<|im_end|>"]}),
    "eos_last": (EOS_LAST, "phi3", {
        "plain": [f"{A1}<|end|>", f"{A2}<|end|>\n<|endoftext|>"],
        "system": [f"{A1}<|end|>", f"{A2}<|end|>\n<|endoftext|>"],
        "think": [f"{THINK[1]['content']}<|end|>", f"{THINK[3]['content']}<|end|>\n"
                                                   "<|endoftext|>"]}),
    "system_last_user": (SYSTEM_LAST_USER, "mistral", {
        "plain": [f"{A1}</s>", f"{A2}</s>"], "system": [f"{A1}</s>", f"{A2}</s>"],
        "think": [f"{THINK[1]['content']}</s>", f"{THINK[3]['content']}</s>"]}),
    "system_refused": (SYSTEM_REFUSED, "gemma2", {
        "plain": [f"{A1}<end_of_turn>", f"{A2}<end_of_turn>"], "system": None,
        "think": [f"{THINK[1]['content']}<end_of_turn>", f"{THINK[3]['content']}<end_of_turn>"]}),
    "dated": (DATED, "llama3", {
        "plain": [f"{A1}<|eot_id|>", f"{A2}<|eot_id|>"],
        "system": [f"{A1}<|eot_id|>", f"{A2}<|eot_id|>"],
        "think": [f"{THINK[1]['content']}<|eot_id|>", f"{THINK[3]['content']}<|eot_id|>"]}),
    "generation": (GENERATION, "smollm3", {
        "plain": [f"{A1}<|im_end|>\n", f"{A2}<|im_end|>\n"],
        "system": [f"{A1}<|im_end|>\n", f"{A2}<|im_end|>\n"],
        "think": [f"{THINK[1]['content']}<|im_end|>\n", f"{THINK[3]['content']}<|im_end|>\n"]}),
    "prefill": (PREFILL, "qwen", {
        "plain": [f"{A1}<|im_end|>", f"{A2}<|im_end|>"],
        "system": [f"{A1}<|im_end|>", f"{A2}<|im_end|>"],
        "think": [f"{A1}<|im_end|>", f"{THINK[3]['content']}<|im_end|>"]}),
    "last_marker": (LAST_MARKER, "gpt_oss", {
        "plain": [f"<|channel|>final<|message|>{A1}<|end|>",
                  f"<|channel|>final<|message|>{A2}<|return|>"],
        "system": [f"<|channel|>final<|message|>{A1}<|end|>",
                   f"<|channel|>final<|message|>{A2}<|return|>"],
        "think": [f"<|channel|>final<|message|>{THINK[1]['content']}<|end|>",
                  f"<|channel|>final<|message|>{THINK[3]['content']}<|return|>"]}),
}


def trained_runs(ids, labels, tokenizer) -> list:
    """The decoded text of each run of trained tokens; asserts a trained token's label is its
    id."""
    runs, run = [], []
    for token, label in zip(ids, labels):
        assert label in (token, IGNORE)
        if label != IGNORE:
            run.append(token)
        elif run:
            runs.append(tokenizer.decode(run))
            run = []
    return runs + ([tokenizer.decode(run)] if run else [])


def case_tokenizer(name):
    template, family, _ = CASES[name]
    return family_tokenizer(family, template)


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(CASES))
def test_masks_are_the_assistant_text_and_its_end_marker(name, conversation):
    tokenizer = case_tokenizer(name)
    messages, expected = CONVERSATIONS[conversation], CASES[name][2][conversation]
    if expected is None:
        with pytest.raises(TemplateRefusal, match="System role not supported"):
            conversation_tokens(messages, tokenizer, where="data.train row 4")
        return
    ids, labels = conversation_tokens(messages, tokenizer, "assistant")
    assert trained_runs(ids, labels, tokenizer) == expected
    ids, labels = conversation_tokens(messages, tokenizer, "last_assistant")
    assert trained_runs(ids, labels, tokenizer) == expected[-1:]
    all_ids, all_labels = conversation_tokens(messages, tokenizer, "all")
    assert all_ids == ids and all_labels == ids
    cut, cut_labels = conversation_tokens(messages, tokenizer, "assistant", max_length=7)
    assert cut == ids[:7] and len(cut_labels) == 7


def test_contents_the_template_trims_are_found_trimmed():
    tokenizer = case_tokenizer("system_refused")
    messages = [{"role": "user", "content": "  What is AI?\n"},
                {"role": "assistant", "content": "\n A branch of science.  "}]
    ids, labels = conversation_tokens(messages, tokenizer)
    assert trained_runs(ids, labels, tokenizer) == [f"{A1}<end_of_turn>"]


def test_date_functions_render_todays_date():
    import datetime

    tokenizer = case_tokenizer("dated")
    ids, _ = conversation_tokens(PLAIN, tokenizer, "all")
    assert datetime.date.today().strftime("Today Date: %d %b %Y") in tokenizer.decode(ids)


def test_end_of_turn_ids_are_the_markers_after_the_content():
    tokenizer = case_tokenizer("last_marker")
    stops = tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer))
    assert stops == ["<|end|>", "<|return|>"]  # the channel header is trained, not a stop
    tokenizer = case_tokenizer("eos_last")
    assert tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)) == \
        ["<|end|>", "<|endoftext|>"]


# --------------------------------------------------------------------------------------------
# bad input: named and located


def test_a_template_that_rewrites_the_content_is_refused_naming_turn_and_text():
    tokenizer = family_tokenizer("qwen", REWRITES)
    with pytest.raises(TemplateMaskError) as error:
        conversation_tokens(PLAIN, tokenizer, template="file 'upper.jinja'",
                            where="data.train row 2")
    message = str(error.value)
    assert message.startswith("data.train row 2: data.chat_template: the chat template file "
                              "'upper.jinja' cannot mark the assistant turns: turn 1")
    assert "its content 'A branch of science.' is not in the render" in message
    assert "data.train_on='all'" in message
    with pytest.raises(TemplateMaskError, match="turn 1"):
        check_template(tokenizer, "file 'upper.jinja'")
    check_template(tokenizer, "file 'upper.jinja'", train_on="all")  # no mask: no refusal
    ids, labels = conversation_tokens(PLAIN, tokenizer, "all")
    assert labels == ids


def test_generation_blocks_that_do_not_match_the_turns_are_refused():
    template = GENERATION.replace("{% if m.role == 'assistant' %}",
                                  "{% if m.role == 'assistant' and not loop.last %}")
    with pytest.raises(TemplateMaskError, match=r"writes 1 \{% generation %\} blocks for 2 "
                                                r"assistant turns"):
        conversation_tokens(PLAIN, family_tokenizer("smollm3", template))


def test_a_template_that_refuses_a_role_names_row_and_its_message():
    with pytest.raises(TemplateRefusal) as error:
        conversation_tokens(WITH_SYSTEM, case_tokenizer("system_refused"), template="file "
                            "'gemma.jinja'", where="data.train row 4")
    assert str(error.value) == (
        "data.train row 4: the chat template file 'gemma.jinja' refuses the conversation: "
        "System role not supported; the template has no system role: set "
        "data.fold_system=true to fold the system text into the first user turn, or drop the "
        "system messages")


# --------------------------------------------------------------------------------------------
# train/inference parity


def test_parity_holds_where_the_generation_prompt_starts_the_trained_text():
    for name in ("think_strip", "eos_last", "dated", "last_marker", "generation"):
        assert parity_difference(PLAIN, case_tokenizer(name)) is None, name
    # QwQ with reasoning in the last turn: its pre-filled <think> is prompt there
    tokenizer, reasoned = case_tokenizer("prefill"), THINK[:2]
    assert parity_difference(reasoned, tokenizer, "last_assistant") is None
    ids, labels = conversation_tokens(reasoned, tokenizer)
    assert trained_runs(ids, labels, tokenizer) == [f"They ask.\n</think>\n\n{A1}<|im_end|>"]


def test_parity_warns_with_the_difference():
    difference = parity_difference(PLAIN, case_tokenizer("prefill"), "last_assistant")
    assert difference.startswith("turn 3: from character ")
    assert "<|im_start|>assistant\\n<think>\\n'" in difference  # the prompt's pre-fill
    logged = []
    warning = check_parity([{"messages": WITH_SYSTEM}], case_tokenizer("system_last_user"),
                           "assistant", "file 'nemo.jinja'", logged.append)
    assert logged == [warning]
    assert warning.startswith("warning: chat template file 'nemo.jinja': train/inference "
                              "parity: on data.train row 0, turn 2: from character 9, the "
                              "generation prompt has '<s>[INST]You are brief.")
    assert "where the training render has '<s>[INST]What is AI?" in warning


# --------------------------------------------------------------------------------------------
# through fturun's pipeline: the tokenizer's own template, padded and packed

TINY_LLAMA = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 32,
              "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
              "max_position_embeddings": 256}


def pipeline_rows(name, tmp_path, registry, train_on, conversations, **data):
    """The tokenized train rows of ``conversations`` through fturun's data pipeline, with a
    saved family tokenizer whose own template is ``name``'s."""
    tokenizer_dir = tmp_path / "tokenizer"
    case_tokenizer(name).save_pretrained(tokenizer_dir)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    recipe = {"task": "causal-lm",
              "data": {"train": {"name": "files", "params": {"path": str(rows)}},
                       "format": "messages", "train_on": train_on, "max_length": 128, **data},
              "model": {"name": "from_config", "params": {"tokenizer": str(tokenizer_dir),
                                                          "config": dict(TINY_LLAMA)}},
              "training": {"report_to": "none"}, "tracking": {"enabled": False}}
    messages = []
    context = BuildContext(recipe=recipe, task="causal-lm", recipe_dir=str(tmp_path),
                           log=messages.append)
    splits = prepare_datasets(recipe["data"], registry, context)
    context.model, context.tokenizer = build_component(registry, "model", recipe["model"],
                                                       context)
    splits = tokenize_datasets(splits, recipe["data"], context)
    return context, splits["train"], messages


@pytest.mark.parametrize("train_on", ["assistant", "last_assistant", "all"])
@pytest.mark.parametrize("name", ["think_strip", "eos_last", "system_last_user", "generation"])
def test_padded_and_packed_batches_keep_the_masks(name, train_on, registry, tmp_path):
    conversations = [PLAIN, THINK]
    context, ds, _ = pipeline_rows(name, tmp_path, registry, train_on, conversations)
    tokenizer = context.tokenizer
    expected = CASES[name][2]
    for row, conversation in zip(ds, ("plain", "think")):
        if train_on == "all":
            assert row["labels"] == row["input_ids"]
        else:
            runs = expected[conversation][-1:] if train_on == "last_assistant" else \
                expected[conversation]
            assert trained_runs(row["input_ids"], row["labels"], tokenizer) == runs
    features = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in ds]
    padded = build_component(registry, "collator", {"name": "language_modeling",
                                                    "params": {"mlm": False}}, context)(features)
    longest = max(len(f["labels"]) for f in features)
    assert padded["labels"].tolist() == [f["labels"] + [IGNORE] * (longest - len(f["labels"]))
                                         for f in features]
    packed = build_component(registry, "collator", "packing", context)(features)
    assert packed["labels"].tolist() == [sum(([IGNORE] + f["labels"][1:] for f in features),
                                             [])]


def test_fold_system_opts_a_system_message_into_the_first_user_turn(registry, tmp_path):
    context, ds, messages = pipeline_rows("system_refused", tmp_path, registry, "assistant",
                                          [WITH_SYSTEM], fold_system=True)
    text = context.tokenizer.decode(ds[0]["input_ids"])
    assert "<start_of_turn>user\nYou are brief.\n\nWhat is AI?<end_of_turn>" in text
    assert trained_runs(ds[0]["input_ids"], ds[0]["labels"], context.tokenizer) == \
        CASES["system_refused"][2]["plain"]


def test_a_refused_role_is_a_located_error_without_traceback(tmp_path, capsys):
    tokenizer_dir = tmp_path / "tokenizer"
    case_tokenizer("system_refused").save_pretrained(tokenizer_dir)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"messages": c}) + "\n" for c in (PLAIN, WITH_SYSTEM)))
    recipe = {"task": "causal-lm",
              "data": {"train": {"name": "files", "params": {"path": str(rows)}},
                       "format": "messages", "max_length": 128},
              "model": {"name": "from_config", "params": {"tokenizer": str(tokenizer_dir),
                                                          "config": dict(TINY_LLAMA)}},
              "training": {"max_steps": 1, "report_to": "none", "save_strategy": "no",
                           "output_dir": str(tmp_path / "out")},
              "tracking": {"enabled": False}}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    code, out, err = fturun(capsys, "check", path)
    assert code == 1
    assert "data.train row 1: the chat template of the tokenizer refuses the conversation: " \
        "System role not supported; the template has no system role: set " \
        "data.fold_system=true" in err
    assert "Traceback" not in err and "jinja2" not in err
    code, out, err = fturun(capsys, "check", path, "data.fold_system=true")
    assert code == 0, err


def test_the_pipeline_warns_once_on_parity_before_training(registry, tmp_path):
    _, _, messages = pipeline_rows("prefill", tmp_path, registry, "assistant", [PLAIN, PLAIN])
    warnings = [m for m in messages if "train/inference parity" in m]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: chat template of the tokenizer: train/inference "
                                  "parity: on data.train row 0, turn 1: ")
