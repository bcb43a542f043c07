"""Sample generations of the generating tasks (causal LM, seq2seq): a few prompts, generated
with the recipe's ``generation`` settings at the end of a run."""

from __future__ import annotations

from fturun.api import DEFAULT_NUM_SAMPLES, generation_settings


def sample_prompts(context, whole_text: bool) -> list:
    """``[(prompt, reference or None)]``: ``generation.prompts``, else the first rows of the
    eval (or train) data (``context.samples``): their ``text`` and ``target`` (or
    ``text_pair``) when ``whole_text`` or for text pairs; else the first words of the text."""
    section = context.recipe.get("generation") or {}
    count = section.get("num_samples", DEFAULT_NUM_SAMPLES)
    if count == 0:
        return []
    if section.get("prompts"):
        return [(prompt, None) for prompt in section["prompts"]][:count]
    rows = (context.samples or {}).get("eval") or (context.samples or {}).get("train") or []
    prompts = []
    for row in rows[:count]:
        if whole_text or "text_pair" in row:
            prompts.append((row["text"], row.get("target", row.get("text_pair"))))
        else:  # plain text: its first words start the generation
            words = str(row["text"]).split()
            prompts.append((" ".join(words[:8]), " ".join(words[8:24]) or None))
    return prompts


def generate(model, tokenizer, context, prompts, decoder_only: bool, continue_text: bool,
             encode=None, stop_ids=None) -> list:
    """``[{"prompt", "generated", "reference"}]``. ``decoder_only``: the output starts with the
    prompt, and the generation is what follows it (else the whole output is the generation, as
    from an encoder-decoder). ``continue_text``: an end token the tokenizer adds to the prompt is
    dropped, so the model continues the text instead of starting a new one. ``encode(prompt) ->
    ids`` replaces the tokenizer's own encoding (a chat prompt rendered with its template);
    ``stop_ids``: the token ids generation stops at (default: the model's end token)."""
    import torch

    if not prompts:
        return []
    settings = generation_settings(context.recipe, encoder_decoder=not decoder_only)
    device = next(model.parameters()).device
    special = {i for i in (tokenizer.eos_token_id, tokenizer.sep_token_id) if i is not None}
    stop = {"eos_token_id": list(stop_ids)} if stop_ids else {}
    room = prompt_room(model, settings)
    was_training = model.training
    model.eval()
    samples = []
    try:
        for prompt, reference in prompts:
            ids = encode(prompt) if encode is not None else \
                tokenizer(prompt, return_token_type_ids=False)["input_ids"]
            if continue_text and len(ids) > 1 and ids[-1] in special:
                ids = ids[:-1]  # continue the text, do not end it
            if room is not None and decoder_only:
                ids = ids[-room:]  # the prompt's end, with room for the new tokens
            input_ids = torch.tensor([ids], device=device)
            with torch.no_grad():
                output = model.generate(input_ids=input_ids,
                                        attention_mask=torch.ones_like(input_ids),
                                        pad_token_id=tokenizer.pad_token_id, use_cache=True,
                                        **settings, **stop)
            generated = output[0, input_ids.shape[1]:] if decoder_only else output[0]
            samples.append({"prompt": prompt,
                            "generated": tokenizer.decode(generated,
                                                          skip_special_tokens=True).strip(),
                            "reference": reference})
    finally:
        model.train(was_training)
    return samples



def prompt_room(model, settings: dict) -> int | None:
    """How many prompt tokens fit the model's positions beside the new tokens (at least 1), or
    None when its config names no limit: a longer prompt is cut from its start."""
    config = getattr(model, "config", None)
    for field in ("max_position_embeddings", "n_positions", "n_ctx"):
        positions = getattr(config, field, None)
        if isinstance(positions, int) and positions > 0:
            return max(1, positions - int(settings.get("max_new_tokens") or 0))
    return None
