"""Tokenizers of the model families fturun's chat tests use: a small byte-level BPE trained here
on installed English text (the chatterbot corpus), carrying each family's special tokens, BOS,
EOS and pad as published (``tests/data/chat/families.json``; no pad where the family has none).
No pretrained tokenizer is needed: the masks depend on the template and the special tokens,
not on the vocabulary."""

from __future__ import annotations

import functools
import glob
import json
import os
from pathlib import Path

FAMILIES = json.loads((Path(__file__).parent / "data" / "chat" / "families.json").read_text(
    encoding="utf-8"))
VOCAB_SIZE = 700


def corpus_lines() -> list:
    """Lines of English text installed with the chatterbot corpus."""
    import chatterbot_corpus

    root = os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english")
    lines = []
    for path in sorted(glob.glob(os.path.join(root, "*.yml"))):
        with open(path, encoding="utf-8") as f:
            lines += [line.strip(" -\n") for line in f if line.strip(" -\n")]
    return lines


@functools.cache
def _trained_json(specials: tuple) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus_lines(), trainer)
    return tokenizer.to_str()


def family_tokenizer(family: str, template: str | None = None):
    """A fast tokenizer with ``family``'s special tokens (``FAMILIES``), and ``template`` (a
    Jinja source) as its chat template when given."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    facts = FAMILIES[family]
    backend = Tokenizer.from_str(_trained_json(tuple(facts["specials"])))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=facts["bos"], eos_token=facts["eos"],
        pad_token=facts["pad"], extra_special_tokens=[
            t for t in facts["specials"] if t not in (facts["bos"], facts["eos"], facts["pad"])])
    if facts["tokens"]:
        tokenizer.add_tokens(facts["tokens"])
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer
