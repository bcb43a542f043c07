"""The ``grpo`` task's callables (nothing heavy at import): the rows and the vLLM rule.

A row is a prompt: a ``prompt`` text column (``data.columns.prompt`` names the source
column), or, with ``data.format`` (``messages``, ``sharegpt``, ...), a conversation: the prompt
is the conversation up to its last assistant turn, rendered by TRL with the run's chat template
(``data.chat_template``), and that turn's text becomes the row's ``answer`` column (unless the
row has one), which a reward such as ``exact_match`` compares with. The rows keep their other
columns: the rewards receive them (``row`` is each row's index in its source, which errors
name). The model generates the completions itself (TRL's ``GRPOTrainer``); vLLM
(``training.use_vllm``) is refused unless it is installed and CUDA is there.
"""

from __future__ import annotations

from fturun.api import RecipeRuntimeError

#: what TRL's GRPOTrainer logs at each logging step (besides rewards/<name>/mean and /std)
TRAINER_METRICS = ("reward", "reward_std", "frac_reward_zero_std", "entropy",
                   "completions/mean_length")


def check_vllm(training: dict) -> None:
    """``training.use_vllm`` needs vLLM installed and a CUDA device: say so before loading."""
    if not training.get("use_vllm"):
        return
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise RecipeRuntimeError("training.use_vllm: vLLM is not installed (pip install vllm, "
                                 "on a machine with CUDA), or remove training.use_vllm to "
                                 "generate with the model itself")
    import torch

    if not torch.cuda.is_available():
        raise RecipeRuntimeError("training.use_vllm: vLLM generates on CUDA and there is no "
                                 "CUDA device here; remove training.use_vllm to generate with "
                                 "the model itself")


def prepare(sources: dict, recipe_data: dict, context) -> dict:
    """The vLLM rule, then each source's rows numbered (the ``row`` column)."""
    check_vllm(context.recipe.get("training") or {})
    return {split: ds.map(_number, with_indices=True, desc=f"number {split} rows")
            for split, ds in sources.items()}


def _number(row, index):
    return {"row": index}


def _prompt_and_answer(messages: list) -> tuple:
    """The turns before the last assistant turn, and that turn's text ('' without one)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return messages, ""
    return messages[:last], messages[last]["content"]


def tokenize(ds, tokenizer, settings, split):
    """Rows as GRPOTrainer reads them: ``prompt`` (text, or the conversation's turns before
    its last answer) and the other columns, each prompt cut to ``data.max_length`` tokens
    (:func:`cut_prompt`); TRL tokenizes the prompts itself."""
    if "messages" in ds.column_names:
        has_answer = "answer" in ds.column_names
        ds = ds.map(_conversation_prompt, remove_columns=["messages"],
                    fn_kwargs={"has_answer": has_answer}, desc=f"{split}: conversation prompts")
    return ds.map(cut_prompt, fn_kwargs={"tokenizer": tokenizer,
                                         "max_length": settings.max_length},
                  desc=f"{split}: prompts over data.max_length cut")


def prompt_tokens(prompt, tokenizer) -> int:
    """Tokens of a prompt as the model reads it: a text as it is, a conversation rendered with
    the tokenizer's chat template and the generation prompt."""
    if isinstance(prompt, str):
        return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding, or ids


def cut_prompt(row, tokenizer, max_length):
    """A prompt longer than ``max_length`` tokens keeps its end, the part the completion
    follows: a text its last tokens; a conversation its latest turns (a leading system turn
    kept), then the last turn's last words. The model then never reads past its context."""
    prompt = row["prompt"]
    if isinstance(prompt, str):  # its last tokens, as text (a word cut in two may re-tokenize
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # longer: cut again)
        if len(ids) <= max_length:
            return {"prompt": prompt}
        keep = max_length
        while keep > 1 and prompt_tokens(text := tokenizer.decode(ids[-keep:]), tokenizer) > \
                max_length:
            keep -= 1
        return {"prompt": text}
    if prompt_tokens(prompt, tokenizer) <= max_length:
        return {"prompt": prompt}
    system = [m for m in prompt[:1] if m["role"] == "system"]
    turns = list(prompt[len(system):])
    while len(turns) > 1 and prompt_tokens(system + turns, tokenizer) > max_length:
        turns.pop(0)
    words = turns[-1]["content"].split(" ")
    while len(words) > 1 and prompt_tokens(
            system + [{**turns[-1], "content": " ".join(words)}], tokenizer) > max_length:
        words = words[max(len(words) // 8, 1):]
    return {"prompt": system + [{**turns[-1], "content": " ".join(words)}]}


def _conversation_prompt(row, has_answer):
    prompt, answer = _prompt_and_answer(row["messages"])
    if not prompt:
        raise RecipeRuntimeError(f"row {row.get('row')}: the conversation has no turn before "
                                 "its answer to prompt with")
    out = {"prompt": prompt}
    if not has_answer:
        out["answer"] = answer
    return out


def rows_collator(params, context):
    """The rows as they are: GRPOTrainer tokenizes and generates itself."""
    def collate(features):
        return features

    return collate


def metric_inputs(eval_pred, context):
    """The grpo task's metrics are the ones its Trainer logs: nothing for metric components."""
    raise RecipeRuntimeError("task 'grpo' logs its own metrics (reward, rewards/<name>/mean, "
                             "...): remove 'metrics' from the recipe")
