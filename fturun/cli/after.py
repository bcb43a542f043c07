"""After training: ``fturun evaluate``, ``predict``, ``chat``, ``diff`` and ``explain`` — their
help, arguments and commands (arguments in, exit codes out; the work is in
:mod:`fturun.run` and :mod:`fturun.tracking`)."""

from __future__ import annotations

import json
import sys
import tempfile

from .common import load_plugins_warned, load_valid_recipe

COMMANDS = ("evaluate", "predict", "chat", "diff", "explain")
RECIPE_COMMANDS = ("evaluate", "explain")
MODEL_REF = ("REF: a run id, models:/NAME@ALIAS or models:/NAME/VERSION, a logged model id "
             "(m-...), a checkpoint-N folder or a run's model/ folder")
URI_HELP = "the MLflow tracking server of REF (default: $MLFLOW_TRACKING_URI, else " \
           "sqlite:///mlflow.db here)"

HELP = {
    "evaluate": (
        "score a trained model (run, registry, checkpoint, folder) on a recipe's data",
        "Score the model REF on the recipe's eval (and test) data with the recipe's metrics, "
        "tokenization and batching: no training, no optimizer state. An adapter is scored "
        "as trained (on its base model, not merged). The evaluation is an MLflow run tagged "
        "fturun.evaluation, with the model linked, the datasets as inputs, the metrics and the "
        "predictions; the metrics are printed beside the model's training-time ones when the "
        "data is the same. " + MODEL_REF + ".",
        """\
  fturun evaluate recipes/lora_cls.json --model models:/bbc-lora@champion
  fturun evaluate recipes/lora_cls.json --model 294d767e03384a57a69629546b8219ec \\
                                'data.eval={"name": "files", "params": {"path": "holdout.csv"}}' \\
                                'data.split={}'          another eval file
  fturun evaluate recipes/lora_cls.json --model outputs/lora_cls/checkpoint-50
"""),
    "predict": (
        "run a trained model over a CSV, JSON lines or text file: one JSON line per row",
        "Run the model REF over INPUT (a CSV with a header, JSON lines, or text with one row a "
        "line; - reads stdin) and write one JSON line per row: the label and its score "
        "(classification), the tag of each word (token classification), the generated text "
        "(a causal LM: a chat model through its chat template, with the recipe's generation "
        "settings). The rows hold the columns the model was trained on (the recipe's "
        "data.columns names); every row is checked first, and rows that cannot be read are "
        "reported by row number (exit 2, nothing written). " + MODEL_REF + ".",
        """\
  fturun predict models:/bbc-lora@champion new_articles.csv --output predictions.jsonl
  fturun predict outputs/lora_cls/model - < texts.txt     stdin: one text a line
  fturun predict 294d767e03384a57a69629546b8219ec questions.jsonl
"""),
    "chat": (
        "talk to a chat model fturun trained, in the terminal (streamed)",
        "A conversation with the causal LM REF through the chat template it was trained with, "
        "its answers streamed as they are generated, with the recipe's generation settings. "
        "Commands: /reset (a new conversation), /system TEXT (a system turn), /exit. When "
        "stdin is not a terminal each of its lines is a turn or a command, and each answer "
        "is written on a line 'assistant: ...'. " + MODEL_REF + ".",
        """\
  fturun chat outputs/sft_chat/model
  fturun chat models:/chat-sft@champion --system "Answer briefly."
  fturun chat outputs/sft_chat/model < conversation.txt    a turn or a /command a line
"""),
    "diff": (
        "what differs between two runs, two recipes, or a recipe and a run",
        "Compare A and B (run ids or recipe files): the resolved recipes as dotted keys "
        "(training.learning_rate: 0.002 -> 0.001; where the run wrote and how it was tracked "
        "apart), the overrides, the data (digest and rows of each split), the environment "
        "(package versions, Python, platform, fturun, git commit, engine) and the final "
        "metrics side by side with B - A. --json for scripts.",
        """\
  fturun diff 294d767e03384a57a69629546b8219ec 8c1f0a5b2e7d4c6f9a3b1d2e4f6a8b0c
  fturun diff recipes/lora_cls.json 294d767e03384a57a69629546b8219ec
  fturun diff recipes/lora_cls.json recipes/full_cls.json --json
"""),
    "explain": (
        "where each value of a recipe comes from (file:line, override, default)",
        "For each key of the recipe (or KEY alone, or a section such as training) its value "
        "and where it came from: the file and line:col in the extends chain, a command-line "
        "override, a speed default fturun chooses on this machine (with its reason), a "
        "component's params schema default, the recipe schema's default, or (for a "
        "training.NAME asked for by name) TrainingArguments' default.",
        """\
  fturun explain recipes/lora_cls.json                 every value and its origin
  fturun explain recipes/lora_cls.json training.learning_rate
  fturun explain recipes/lora_cls.json adapter training.learning_rate=1e-3
"""),
}


def add_arguments(commands, add_overrides) -> None:
    """The arguments of the five commands (``add_overrides``: the parser's recipe and
    overrides)."""
    evaluate = commands["evaluate"]
    add_overrides(evaluate)
    evaluate.add_argument("--model", required=True, metavar="REF", help="the model to score; "
                          + MODEL_REF)
    evaluate.add_argument("--tracking-uri", metavar="URI", help=URI_HELP)
    evaluate.add_argument("--output-dir", metavar="DIR",
                          help="where evaluation.json and the predictions go (default: the "
                               "recipe's output folder + '-evaluate')")
    for name in ("predict", "chat"):
        p = commands[name]
        p.add_argument("ref", metavar="REF", help="the model; " + MODEL_REF)
        if name == "predict":
            p.add_argument("input", metavar="INPUT",
                           help="a .csv, .jsonl or text file, or - for stdin")
            p.add_argument("--output", metavar="FILE",
                           help="write the JSON lines here (default: stdout)")
            p.add_argument("--format", choices=("csv", "jsonl", "text"),
                           help="INPUT's format (default: from its extension; stdin: JSON "
                                "lines when it starts with '{', else text)")
        else:
            p.add_argument("--system", metavar="TEXT", help="a system turn to start with")
        p.add_argument("--recipe", metavar="RECIPE",
                       help="the recipe the model was trained with, when REF does not say "
                            "(a folder outside its run's output folder)")
        p.add_argument("--tracking-uri", metavar="URI", help=URI_HELP)
    diff = commands["diff"]
    diff.add_argument("a", metavar="A", help="a run id or a recipe file")
    diff.add_argument("b", metavar="B", help="a run id or a recipe file")
    diff.add_argument("--json", action="store_true", help="the differences as JSON")
    diff.add_argument("--tracking-uri", metavar="URI", help="the MLflow tracking server of "
                      "the runs (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    explain = commands["explain"]
    explain.add_argument("recipe", metavar="RECIPE", help="recipe file (JSON)")
    explain.add_argument("key", metavar="KEY", nargs="?",
                         help="one dotted key or section (default: every value)")
    add_overrides(explain, recipe_help="")


def _source(ref, uri, workdir, recipe_path=None):
    from ..recipe.load import load_recipe
    from ..run.model_ref import resolve_model

    source = resolve_model(ref, uri, workdir)
    recipe = load_recipe(recipe_path) if recipe_path else None
    return source, recipe


def cmd_evaluate(args) -> int:
    """Score the model on the recipe's data; print the metrics beside the training-time
    ones."""
    from ..run.evaluate import comparison_rows, evaluate_model

    recipe, loaded = load_valid_recipe(args.recipe, args.overrides)
    with tempfile.TemporaryDirectory(prefix="fturun-evaluate-") as workdir:
        # the model's server: --tracking-uri, else the one the recipe tracks to
        uri = args.tracking_uri or (recipe.data.get("tracking") or {}).get("tracking_uri")
        source, _ = _source(args.model, uri, workdir)
        print(f"evaluating {source.describe()}", flush=True)
        result = evaluate_model(recipe, loaded.registry, source, args.output_dir,
                                plugins=loaded.plugins)
    rows = comparison_rows(result)
    header = "at training" if result.same_data else ""
    print(f"\n  {'metric':<28} {'evaluated':>12} {header:>12}")
    for key, value, trained in rows:
        then = f"{trained:>12.6g}" if trained is not None else ""
        print(f"  {key:<28} {value:>12.6g} {then}")
    if not result.same_data and source.metrics:
        print("  (the data differs from the model's training run: its metrics are not "
              "comparable)")
    print(f"  results: {result.output_dir}/evaluation.json")
    if result.run_id:
        print(f"  MLflow run: {result.run_id} (an evaluation) at {result.tracking_uri}")
    return 0


def cmd_predict(args) -> int:
    """One JSON line per row of INPUT."""
    from ..core.io import write_lines
    from ..run.inference import load_weights, model_plan
    from ..run.predict import check_rows, predict_rows, read_rows, reads

    with tempfile.TemporaryDirectory(prefix="fturun-predict-") as workdir:
        source, recipe = _source(args.ref, args.tracking_uri, workdir, args.recipe)
        loaded = model_plan(source, load_plugins_warned().registry, recipe)
        rows = read_rows(args.input, args.format, reads(loaded)[0])
        where = "stdin" if args.input == "-" else args.input
        inputs = check_rows(rows, loaded, where)  # every row checked before the model loads
        load_weights(loaded)
        from tqdm.auto import tqdm

        with tqdm(total=len(inputs), desc="predict", unit="row", file=sys.stderr,
                  disable=None) as progress:
            answers = predict_rows(loaded, inputs, progress)
    if args.output:
        write_lines(args.output, answers)
        print(f"{len(answers)} predictions -> {args.output}", file=sys.stderr)
    else:
        for answer in answers:
            print(json.dumps(answer, ensure_ascii=False))
    return 0


def cmd_chat(args) -> int:
    """A conversation with the model (stdin's lines when it is not a terminal)."""
    from ..run.chat_session import ChatSession, check_chat_model, run_chat
    from ..run.inference import load_model

    with tempfile.TemporaryDirectory(prefix="fturun-chat-") as workdir:
        source, recipe = _source(args.ref, args.tracking_uri, workdir, args.recipe)
        loaded = load_model(source, load_plugins_warned().registry, recipe)
    check_chat_model(loaded)
    session = ChatSession(loaded, args.system)

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    if sys.stdin.isatty():
        print(f"chatting with {source.describe()}\n/reset, /system TEXT, /exit", flush=True)
        run_chat(session, _typed_lines(), write, prompt=lambda: write("you: "))
    else:
        run_chat(session, sys.stdin, write)
    return 0


def _typed_lines():
    while True:
        try:
            yield input()
        except EOFError:
            return


def cmd_diff(args) -> int:
    """The differences of A and B, as text or JSON."""
    from ..tracking.diff import diff_lines, diff_sides, read_side
    from ..tracking.queries import open_client

    clients = []

    def client_for():
        if not clients:
            clients.append(open_client(args.tracking_uri))
        return clients[0]

    result = diff_sides(read_side(args.a, client_for), read_side(args.b, client_for))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(diff_lines(result)))
    return 0


def cmd_explain(args) -> int:
    """Each value (or KEY's) and where it came from."""
    from ..run.explain import explain

    key, overrides = args.key, list(args.overrides)
    if key and "=" in key:  # an override where KEY would be
        key, overrides = None, [key] + overrides
    recipe, loaded = load_valid_recipe(args.recipe, overrides, check_hub=False)
    for origin in explain(recipe, loaded.registry, key):
        print(origin.line())
    return 0
