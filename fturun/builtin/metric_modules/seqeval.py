"""Entity-level precision, recall and F1 for IOB/IOB2/IOBES tag sequences, as a local evaluate
module, pure Python (the same span rules as the seqeval package, which need not be installed).

An entity is a span of tokens with a type: ``B-PER I-PER`` is one PER entity over two tokens.
A predicted entity counts as correct only when its type, start and end all equal a reference
entity's. ``mode="default"`` follows conlleval/seqeval: an ``I-X`` after ``O`` or after another
type starts an entity too. ``mode="strict"`` is IOB2 only: an entity starts at ``B-X`` and
continues over ``I-X``; a stray ``I-X`` is not an entity. Scores are micro-averaged over all
entities; per-type F1 is reported as ``seqeval_f1_<TYPE>``."""

import collections

import datasets
import evaluate

_DESCRIPTION = ("Entity-level (span) precision/recall/F1 of IOB-tagged sequences, plus token "
                "accuracy.")
_KWARGS_DESCRIPTION = """
Args:
    predictions: a list of tag sequences, e.g. [["B-PER", "I-PER", "O"]].
    references: the true tag sequences (same lengths).
    mode: "default" (conlleval rules) or "strict" (IOB2: entities start at B- only).
Returns:
    {"seqeval_precision", "seqeval_recall", "seqeval_f1", "seqeval_accuracy",
     "seqeval_f1_<TYPE>" for each entity type}
"""


def split_tag(tag):
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; a bare type ``"PER"`` counts
    as ``I-PER``."""
    tag = str(tag)
    if tag in ("O", ""):
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIESLU":
        prefix = {"L": "E", "U": "S"}.get(tag[0], tag[0])
        return prefix, tag[2:]
    return "I", tag


def end_of_chunk(prev_tag, tag, prev_type, type_):
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_type != type_


def start_of_chunk(prev_tag, tag, prev_type, type_):
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_type != type_


def entities_default(tags):
    """``[(type, start, end)]`` (end inclusive) with conlleval's rules."""
    found = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, type_ = split_tag(tag)
        if end_of_chunk(prev_tag, prefix, prev_type, type_):
            found.append((prev_type, begin, i - 1))
        if start_of_chunk(prev_tag, prefix, prev_type, type_):
            begin = i
        prev_tag, prev_type = prefix, type_
    return found


def entities_strict(tags):
    """``[(type, start, end)]`` for IOB2: B-X then I-X*; anything else ends the entity."""
    found = []
    current = None  # [type, start, end]
    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag)
        if prefix == "I" and current is not None and current[0] == type_:
            current[2] = i
            continue
        if current is not None:
            found.append(tuple(current))
            current = None
        if prefix == "B":
            current = [type_, i, i]
    if current is not None:
        found.append(tuple(current))
    return found


def entity_scores(predictions, references, mode="default"):
    extract = entities_strict if mode == "strict" else entities_default
    true_entities, pred_entities = set(), set()
    correct_tokens = total_tokens = 0
    for index, (pred, ref) in enumerate(zip(predictions, references)):
        if len(pred) != len(ref):
            raise ValueError(f"sequence {index}: {len(pred)} predicted tags but {len(ref)} "
                             "reference tags")
        true_entities.update((index,) + e for e in extract(ref))
        pred_entities.update((index,) + e for e in extract(pred))
        correct_tokens += sum(p == r for p, r in zip(pred, ref))
        total_tokens += len(ref)

    def prf(true, pred):
        hits = len(true & pred)
        precision = hits / len(pred) if pred else 0.0
        recall = hits / len(true) if true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    precision, recall, f1 = prf(true_entities, pred_entities)
    results = {"seqeval_precision": precision, "seqeval_recall": recall, "seqeval_f1": f1,
               "seqeval_accuracy": correct_tokens / total_tokens if total_tokens else 0.0}
    by_type = collections.defaultdict(lambda: (set(), set()))
    for entity in true_entities:
        by_type[entity[1]][0].add(entity)
    for entity in pred_entities:
        by_type[entity[1]][1].add(entity)
    for type_ in sorted(by_type):
        results[f"seqeval_f1_{type_}"] = prf(*by_type[type_])[2]
    return {key: float(value) for key, value in results.items()}


class Seqeval(evaluate.Metric):
    """Entity-level scores computed in pure Python."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("string")),
                 "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references, mode="default"):
        return entity_scores(predictions, references, mode=mode)
