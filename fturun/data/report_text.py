"""The data report for a person: a short summary (printed by every run before the model loads)
and the full text (``fturun data``, ``data/report.txt`` of a run)."""

from __future__ import annotations


def pct(value) -> str:
    """A share as a percentage."""
    return f"{100 * value:.1f}%"


def _rows(numbers: list) -> str:
    return ", ".join(str(n) for n in numbers)


def summary_lines(report: dict) -> list:
    """One line per split: rows, lengths, truncation, trained share, leakage."""
    lines = []
    for split, f in report["splits"].items():
        parts = [f"{f['rows']:,} rows"]
        stats = f.get("lengths") or {}
        if stats:
            parts.append(f"tokens median {stats['median']}, p99 {stats['p99']}, max {stats['max']}")
        if f.get("max_length") is not None and "truncated_rows" in f:
            parts.append(f"{f['truncated_rows']:,} cut by max_length {f['max_length']} "
                         f"({pct(f['truncated_share'])}, {pct(f['lost_token_share'])} of tokens)")
        if "trained_share" in f:
            parts.append(f"trained {pct(f['trained_share'])} of tokens")
        dup = f.get("duplicates") or {}
        if dup.get("near_exact"):
            parts.append(f"{dup['near_exact']:,} duplicates")
        if dup.get("leaked"):
            parts.append(f"{dup['leaked']:,} also in train")
        unseen = (f.get("labels") or {}).get("unseen_in_train")
        if unseen:
            parts.append(f"labels not in train: {', '.join(unseen)}")
        lines.append(f"{split}: " + "; ".join(parts))
    for source, s in (report.get("sources") or {}).items():
        if s["dropped"]:
            lines.append(f"data.{source}: {s['dropped']:,} of {s['read']:,} rows dropped")
    return lines


def full_text(report: dict) -> str:
    """Every figure of the report, split by split."""
    out = [f"data report: {report['recipe']} (task {report['task']})"]
    for source, s in (report.get("sources") or {}).items():
        out.append(f"data.{source}: {s['read']:,} rows read, {s['dropped']:,} dropped "
                   f"({pct(s['dropped_share'])})")
        for reason in s["reasons"]:
            out.append(f"    {reason['count']:,} {reason['reason']} (first rows "
                       f"{_rows(reason['first_rows'])}, counted from 0 in the source)")
    for split, f in report["splits"].items():
        out.append("")
        out.extend(_split_lines(split, f))
    for line in report.get("warnings") or []:
        out.append(line)
    return "\n".join(out) + "\n"


def _split_lines(split: str, f: dict) -> list:
    out = [f"{split}: {f['rows']:,} rows (row numbers below: positions in the split, from 0)"]
    stats = f.get("lengths") or {}
    if stats:
        out.append(f"  tokens per row: min {stats['min']}, median {stats['median']}, p90 "
                   f"{stats['p90']}, p99 {stats['p99']}, max {stats['max']} (mean "
                   f"{stats['mean']}); {f['tokens']:,} tokens in all")
    if f.get("max_length") is not None and "truncated_rows" in f:
        out.append(f"  truncated by max_length {f['max_length']}: {f['truncated_rows']:,} rows "
                   f"({pct(f['truncated_share'])}), {f['lost_tokens']:,} tokens lost "
                   f"({pct(f['lost_token_share'])})"
                   + (f"; first rows {_rows(f['first_truncated_rows'])}"
                      if f["first_truncated_rows"] else ""))
    if "trained_share" in f:
        out.append(f"  trained tokens: {f['trained_tokens']:,} ({pct(f['trained_share'])} of "
                   f"the tokens of the rows kept; {f['trained_tokens_lost']:,} trained tokens "
                   "cut off)")
        out.append(f"  last trained turn cut: {f['last_turn_cut_rows']:,} rows "
                   f"({pct(f['last_turn_cut_share'])})"
                   + (f"; first rows {_rows(f['first_last_turn_cut_rows'])}"
                      if f["first_last_turn_cut_rows"] else ""))
    for drop in f.get("dropped") or []:
        out.append(f"  dropped: {drop['count']:,} {drop['reason']}; first rows "
                   f"{_rows(drop['first_rows'])}")
    labels = f.get("labels")
    if labels:
        out.append("  labels: " + ", ".join(f"{k} {v:,}" for k, v in labels["counts"].items()))
        if labels.get("unseen_in_train"):
            out.append(f"  labels with no train rows: {', '.join(labels['unseen_in_train'])}")
    dup = f.get("duplicates")
    if dup:
        out.extend(_duplicate_lines(split, dup))
    empty = f.get("empty_turns")
    if empty is not None:
        out.append(f"  conversations with an empty turn: {empty['rows']:,}"
                   + (f"; first rows {_rows(empty['first_rows'])}" if empty["first_rows"] else ""))
    packing = f.get("packing")
    if packing:
        out.append("  " + _packing_line(packing))
    return out


def _packing_line(p: dict) -> str:
    if p["mode"] == "blocks":
        return (f"packing: {p['blocks']:,} blocks of {p['block_size']} tokens, "
                f"{pct(p['efficiency'])} of the tokens kept ({p['dropped_tokens']:,} dropped "
                "at the end of each 1,000 rows)")
    if p["mode"] == "packing":
        return (f"packing: no padding (efficiency 100%; padded batches would be "
                f"{pct(p['padded_efficiency'])} real tokens)")
    return f"padding: {pct(p['efficiency'])} of the tokens in a batch are real tokens"


def _duplicate_lines(split: str, dup: dict) -> list:
    out = [f"  duplicates within {split}: {dup['exact']:,} exact, {dup['near_exact']:,} exact or "
           f"near-exact ({pct(dup['duplicate_share'])})"
           + (f"; first rows {_rows(dup['first_rows'])}" if dup["first_rows"] else "")]
    out.extend(f"      {text!r}" for text in dup.get("first_texts") or [])
    if "leaked" in dup:
        out.append(f"  also in train: {dup['leaked_exact']:,} exact, {dup['leaked']:,} exact or "
                   f"near-exact ({pct(dup['leaked_share'])})"
                   + (f"; first rows {_rows(dup['first_leaked_rows'])}"
                      if dup["first_leaked_rows"] else ""))
        out.extend(f"      {text!r}" for text in dup.get("first_leaked_texts") or [])
    return out
