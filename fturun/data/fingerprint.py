"""Quick fingerprints of the tokenize step.

``datasets`` fingerprints every ``map`` by pickling its arguments, the tokenizer among them; a
fast tokenizer's pickle holds its vocabulary as a Python dict (30,522 entries for MiniLM, pickled
object by object: 0.25 s per map on a 2-core machine, ~1.6 s under a profiler). While
:func:`quick_tokenizer_hash` is active, the tokenizer is pickled for hashing as a digest of the
same state with the vocabulary dict replaced by the sha256 of its JSON (~40 ms): still
its whole state, so a changed vocabulary, added token, template or setting is another
fingerprint, and two processes loading the same tokenizer get the same one (the cache hits).
Without the ``datasets`` internals it relies on, nothing changes."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

BIG_DICT = 1000  # entries from which a dict attribute is digested as JSON, not pickled


@contextmanager
def quick_tokenizer_hash(tokenizer):
    """Within the block, ``datasets`` hashes ``tokenizer`` by :func:`tokenizer_digest`."""
    try:
        from datasets.utils._dill import Pickler, _save_transformersPreTrainedTokenizerBase
    except ImportError:  # another datasets layout: its own (slower) hashing
        yield
        return
    datasets_way = _save_transformersPreTrainedTokenizerBase
    kind = type(tokenizer)
    had, before = kind in Pickler.dispatch, Pickler.dispatch.get(kind)
    busy = []  # within tokenizer_digest: the tokenizer is pickled the datasets way

    def save(pickler, obj):
        if obj is tokenizer and not busy:
            busy.append(True)
            try:
                digest = tokenizer_digest(obj)
            finally:
                busy.pop()
            pickler.save_reduce(str, ("fturun-tokenizer:" + digest,), obj=obj)
        else:
            (before or datasets_way)(pickler, obj)

    Pickler.dispatch[kind] = save
    try:
        yield
    finally:
        if had:
            Pickler.dispatch[kind] = before
        else:
            Pickler.dispatch.pop(kind, None)


def tokenizer_digest(tokenizer) -> str:
    """``datasets``' hash of ``tokenizer`` with each big dict attribute (the vocabulary)
    replaced by the sha256 of its JSON while it is hashed."""
    from datasets.fingerprint import Hasher

    state = tokenizer.__dict__
    big = {key: value for key, value in state.items()
           if isinstance(value, dict) and len(value) >= BIG_DICT}
    digests = {}
    for key, value in big.items():
        try:
            text = json.dumps(value)  # in its order: another order can only miss the cache
        except (TypeError, ValueError):  # not JSON: pickled as datasets would
            continue
        digests[key] = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        state.update(digests)
        return Hasher.hash(tokenizer)
    finally:
        state.update({key: big[key] for key in digests})
