"""The recipe keys of the data report: ``data.limits`` (figures a run must stay within, checked
before the model loads) and ``data.preprocessed`` (tokenized splits written by ``fturun data
--write``)."""

from __future__ import annotations

SHARE = {"type": "number", "minimum": 0, "maximum": 1,
         "x-fturun-hint": "give a share between 0 and 1 (0.1 is 10%)"}

LIMIT_PROPERTIES = {
    "max_truncated_share": {**SHARE, "description": "stop when more than this share of a "
                            "split's rows is cut by data.max_length (default: a warning at "
                            "0.1)"},
    "max_dropped_share": {**SHARE, "description": "stop when more than this share of a "
                          "source's or split's rows is dropped (empty text, no label, no "
                          "trained token left)"},
    "max_duplicate_share": {**SHARE, "description": "stop when more than this share of a "
                            "split's rows repeats another row of it (exactly or nearly), or of "
                            "an eval/test split's rows also sits in train (default: a warning "
                            "at 0.01 for the latter)"},
    "min_trained_share": {**SHARE, "description": "conversations: stop when less than this "
                          "share of a split's tokens is trained on"},
}

SPLIT_LIMITS = {"type": "object", "additionalProperties": False,
                "description": "limits of this split only, over the ones for every split",
                "properties": LIMIT_PROPERTIES}

LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "description": "figures of the data report a run must stay within; a broken limit stops "
                   "the run before the model loads (exit 2), naming the split, the figure and "
                   "the limit. Per split: {\"eval\": {\"max_truncated_share\": 0.5}}",
    "properties": {**LIMIT_PROPERTIES, "train": SPLIT_LIMITS, "eval": SPLIT_LIMITS,
                   "test": SPLIT_LIMITS},
}

PREPROCESSED = {"type": "string", "minLength": 1,
                "description": "read the tokenized splits written by 'fturun data RECIPE "
                               "--write DIR' (relative to the recipe) instead of reading and "
                               "tokenizing the sources; refused when the data settings or the "
                               "tokenizer changed since"}
