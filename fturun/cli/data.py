"""``fturun data``: the report of a recipe's data, read and tokenized as a run would, without
loading the model's weights; ``--write DIR`` keeps the tokenized splits for
``data.preprocessed``."""

from __future__ import annotations

import json

from .common import load_valid_recipe

HELP = (
    "know your data before you train: lengths, truncation, duplicates, labels",
    "Read and tokenize the recipe's data as a run would (same sources, columns, chat "
    "template, masks, packing, mixing and splits; the tokenization cache is the run's), "
    "without loading the model's weights, and report per split: rows read and dropped (the "
    "reason and the first row numbers), token lengths against data.max_length, rows "
    "truncated and the share of tokens lost, the trained share of conversations and the rows "
    "whose last trained turn is cut, label counts (and eval/test labels unseen in train), "
    "exact and near-exact duplicates within and across splits (leakage), empty turns, and the "
    "packing or padding efficiency. Writes OUTPUT_DIR/data/ (report.json, report.txt, "
    "token_lengths.png: a histogram of the lengths per split with the max_length line). "
    "Exit 2 when the data breaks a data.limits limit.",
    """\
  fturun data recipes/lora_cls.json                   the report, printed
  fturun data recipes/sft_chat.json data.max_length=512      what a longer limit keeps
  fturun data recipes/lora_cls.json --json            every figure as JSON, for scripts
  fturun data recipes/lora_cls.json --write prep/bbc  keep the tokenized splits; then
  fturun recipes/lora_cls.json data.preprocessed=../prep/bbc    a run reads them (path
                                                      relative to the recipe)
""")


def add_arguments(p) -> None:
    """The options of ``fturun data`` (its recipe and overrides are added with the others)."""
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (every figure) instead of text")
    p.add_argument("--write", metavar="DIR",
                   help="also save the tokenized splits in DIR; a recipe with "
                        "data.preprocessed=DIR then reads them instead of tokenizing (refused "
                        "when its data settings or tokenizer changed since)")


def cmd_data(args) -> int:
    """Validate, report on the data, print the report; exit 2 on a broken data.limits limit."""
    from ..core.dist import quiet_off_main
    from ..data.report_text import full_text
    from ..run.build import build_context, default_output_dir
    from ..run.data_step import inspect_data

    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    context = build_context(recipe, loaded.registry, default_output_dir(recipe))
    if args.json:  # nothing but the JSON on stdout
        context.log = lambda message: None
    else:
        context.log = quiet_off_main()
    report, limit_error = inspect_data(recipe, loaded.registry, context, write=args.write)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print()
        print(full_text(report), end="")
        print(f"\nwritten: {report['folder']} (report.json, report.txt, token_lengths.png)")
        if report.get("written"):
            print(f"tokenized splits: {report['written']} (data.preprocessed reads them)")
    if limit_error is not None:
        raise limit_error
    return 0
