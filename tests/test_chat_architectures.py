"""Modern decoder architectures end to end, offline (issue 28): tiny Llama, Qwen3, Gemma 2,
Mistral and Phi-3 models built from their published configs' facts
(``tests/data/chat/architectures.json``) and saved as a "pretrained" folder with a tokenizer
carrying the family's special tokens (no pad token for Llama and Mistral: fturun sets one), then
``fturun run``: SFT on conversations with LoRA on ``"all-linear"``, packed (the packing check
runs first), the adapter merged, and the registered MLflow text-generation model loaded and
asked in a fresh process that has no fturun.

Llama and Mistral are given ChatML (``data.chat_template``), whose markers their tokenizers
lack: the embeddings are resized and the new rows trained through peft's
``trainable_token_indices`` (input embeddings; Mistral's untied output embeddings too). The
others use a template of their family written in ``test_chat_masks`` (Gemma 2's refuses a system
message: ``data.fold_system``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chat_families import family_tokenizer
from helpers import call_cli as fturun
from test_chat_masks import EOS_LAST, SYSTEM_REFUSED, THINK_STRIP

ARCHITECTURES = json.loads((Path(__file__).parent / "data" / "chat" / "architectures.json")
                           .read_text(encoding="utf-8"))
#: architecture -> (tokenizer family, the tokenizer's own template, data settings)
SETUPS = {
    "llama": ("llama3", None, {"chat_template": "chatml"}),
    "qwen3": ("qwen", THINK_STRIP, {}),
    "gemma2": ("gemma2", SYSTEM_REFUSED, {"fold_system": True}),
    "mistral": ("mistral", None, {"chat_template": "chatml"}),
    "phi3": ("phi3", EOS_LAST, {}),
}
PAIRS = [("What is AI?", "A branch of science."), ("Who made it?", "Many people."),
         ("Do you like movies?", "Yes, I do."), ("What is your name?", "I am a bot."),
         ("Is it raining?", "Not today."), ("Can you help me?", "Of course.")]


def conversation_rows(path: Path) -> str:
    """24 conversations of two exchanges, half with a system message."""
    rows = []
    for i in range(24):
        (q1, a1), (q2, a2) = PAIRS[i % 6], PAIRS[(i + 1) % 6]
        messages = [{"role": "user", "content": q1}, {"role": "assistant", "content": a1},
                    {"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        if i % 2:
            messages.insert(0, {"role": "system", "content": "You are brief."})
        rows.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def pretrained_folder(architecture: str, folder: Path) -> str:
    """A tiny model of ``architecture`` with its family tokenizer, saved like a Hub model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    family, template, _ = SETUPS[architecture]
    facts = ARCHITECTURES[architecture]
    tokenizer = family_tokenizer(family, template)
    fields = {**facts["published"], **facts["tiny"]}
    config = AutoConfig.for_model(fields.pop("model_type"), **fields,
                                  vocab_size=len(tokenizer),
                                  bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


FRESH_PROCESS = textwrap.dedent("""\
    import json, sys
    sys.modules["fturun"] = None  # the model needs no fturun where it is loaded
    import mlflow

    answers = mlflow.pyfunc.load_model(sys.argv[1]).predict(["What is AI?"])
    print("ANSWERS " + json.dumps(list(answers)))
""")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", list(SETUPS))
def test_lora_sft_packed_merged_and_served(architecture, mlflow_server, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = pretrained_folder(architecture, tmp_path / "base")
    out = tmp_path / "out"
    name = f"tiny-chat-{architecture}"
    recipe = {
        "task": "causal-lm", "seed": 1,
        "data": {"train": {"name": "files",
                           "params": {"path": conversation_rows(tmp_path / "rows.jsonl")}},
                 "format": "messages", "max_length": 96, "packing": True, "split": {"eval": 4},
                 **SETUPS[architecture][2]},
        "model": {"name": "pretrained", "params": {"path": base}},
        "adapter": {"name": "lora", "params": {"r": 4, "lora_alpha": 8,
                                               "target_modules": "all-linear"}},
        "output": {"merge_adapter": True},
        "generation": {"max_new_tokens": 4, "num_samples": 1},
        "training": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                     "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1,
                     "report_to": "none", "output_dir": str(out)},
        "tracking": {"tracking_uri": mlflow_server, "experiment": "chat-architectures",
                     "registered_model_name": name, "system_metrics": False},
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    code, stdout, stderr = fturun(capsys, "run", tmp_path / "recipe.json")
    log = stdout + stderr
    assert code == 0, log[-3000:]
    added = SETUPS[architecture][2].get("chat_template") == "chatml"
    if added:  # ChatML's two markers are new rows, trained
        trained_in = "embed_tokens and lm_head" if architecture == "mistral" else "embed_tokens"
        assert f"the 2 tokens the chat template added are trained in {trained_in}" in log
    else:
        assert "tokens the chat template added" not in log

    tokenizer = AutoTokenizer.from_pretrained(out / "model-merged")
    merged = AutoModelForCausalLM.from_pretrained(out / "model-merged")
    assert merged.config.model_type == ARCHITECTURES[architecture]["published"]["model_type"]
    assert merged.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert not any("lora" in n for n, _ in merged.named_parameters())  # merged

    script = tmp_path / "ask.py"
    script.write_text(FRESH_PROCESS)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(script), f"models:/{name}/1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.split("ANSWERS ", 1)[1])
    assert len(answers) == 1 and isinstance(answers[0], str)
