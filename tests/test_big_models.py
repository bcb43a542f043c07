"""Big models on small hardware: the QLoRA / FSDP / kernel / compile rules (located, exit 2,
before anything loads), the BitsAndBytesConfig built from ``model.params.quantization``, the
``fsdp`` / ``fsdp_config`` schema generated from the installed transformers, the FSDP config
TrainingArguments builds and what engine.json records of it, ``config_overrides`` applied before
loading and read by the position check, and the merge into a reloaded base.

FSDP itself cannot run on this CPU machine: accelerate (1.15) builds FSDP only for GPU
distributed types; with ``use_cpu`` under torchrun it makes MULTI_CPU and ignores the FSDP
plugin (the run would be plain DDP). So the rule refuses FSDP without CUDA, and bench/gpu_check.sh
runs the FSDP recipe on a GPU."""

from __future__ import annotations

import json

import pytest
from helpers import MODEL, RECIPES

from fturun.core.errors import RecipeError, RecipeRuntimeError
from fturun.engine.hardware import Hardware, check_hardware
from fturun.engine.rules import big_model_findings
from fturun.testing import build_component, make_context, tiny_recipe, validate

LORA = RECIPES / "lora_cls.json"
NOTHING = Hardware(installed=lambda module: False, environ={})
CPU = Hardware(installed=lambda module: True, environ={})
T4 = Hardware(cuda=True, gpus=1, gpu_name="Tesla T4", capability=(7, 5), bf16=False,
              installed=lambda module: True, environ={})
P100 = Hardware(cuda=True, gpus=1, gpu_name="Tesla P100", capability=(6, 0), bf16=False,
                installed=lambda module: True, environ={})
A100 = Hardware(cuda=True, gpus=2, gpu_name="NVIDIA A100", capability=(8, 0), bf16=True,
                installed=lambda module: True, environ={})
LAUNCHED = Hardware(cuda=True, gpus=2, gpu_name="NVIDIA A100", capability=(8, 0), bf16=True,
                    installed=lambda module: True,
                    environ={"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0"})
QLORA = {"model": {"name": "pretrained",
                   "params": {"path": MODEL, "dtype": "bfloat16",
                              "quantization": {"bits": 4, "storage_dtype": "bfloat16"}}},
         "adapter": {"name": "lora"}}


def _findings(hw, training=None, **sections):
    problems, warnings = big_model_findings({"training": training or {}, **sections}, hw)
    return problems, warnings


def _only(hw, training=None, **sections):
    problems, _ = _findings(hw, training, **sections)
    assert len(problems) == 1, problems
    return problems[0]


def _quantized(quant, adapter=True, **params):
    sections = {"model": {"name": "pretrained",
                          "params": {"path": MODEL, **params, "quantization": quant}}}
    if adapter:
        sections["adapter"] = "lora"
    return sections


# --------------------------------------------------------------------------------------------
# the rules, one message each


@pytest.mark.parametrize("hw,training,sections,where,fragments", [
    # quantization
    (Hardware(installed=lambda m: m != "bitsandbytes", environ={}, cuda=True, gpus=1,
              capability=(8, 0), bf16=True), {}, _quantized({"bits": 4}),
     "$.model.params.quantization", ["needs bitsandbytes", "pip install 'fturun[quantization]'"]),
    (CPU, {}, _quantized({"bits": 4}), "$.model.params.quantization",
     ["runs on a CUDA GPU and this machine has none", "remove model.params.quantization"]),
    (A100, {}, _quantized({"bits": 4}, adapter=False), "$.adapter",
     ["cannot be fully fine-tuned", "add an adapter", "\"lora\""]),
    (A100, {}, _quantized({"bits": 8, "quant_type": "nf4"}),
     "$.model.params.quantization.quant_type", ["a 4-bit setting", "bits to 4"]),
    (T4, {}, _quantized({"compute_dtype": "bfloat16"}),
     "$.model.params.quantization.compute_dtype", ["Tesla T4 (compute capability 7.5)",
                                                   "use 'float16'"]),
    # FSDP
    (LAUNCHED, {"fsdp": True}, {"deepspeed": {"zero_optimization": {"stage": 2}}},
     "$.training.fsdp", ["FSDP and DeepSpeed", "keep one"]),
    (CPU, {"fsdp": True}, {}, "$.training.fsdp",
     ["FSDP needs CUDA GPUs", "silently train plain DDP", "remove training.fsdp"]),
    (LAUNCHED, {"fsdp": True, "use_cpu": True}, {}, "$.training.fsdp", ["FSDP needs CUDA GPUs"]),
    (A100, {"fsdp": True}, {}, "$.training.fsdp",
     ["needs a launcher", "fturun launch --nproc 2 RECIPE", "--nproc 1 on one GPU"]),
    (LAUNCHED, {"fsdp": "hybrid_shard auto_wrap"}, {}, "$.training.fsdp",
     ["'hybrid_shard' is an FSDP1 sharding strategy", "'full_shard' or 'shard_grad_op'"]),
    (LAUNCHED, {"fsdp": True, "fsdp_config": {"state_dict_type": "SHARDED_STATE_DICT"}}, {},
     "$.training.fsdp_config.state_dict_type",
     ["gathered in full", "'FULL_STATE_DICT'", "output.save_model=false"]),
    (LAUNCHED, {"fsdp": True}, _quantized({"bits": 4}, dtype="bfloat16"),
     "$.model.params.quantization.storage_dtype",
     ["FSDP flattens one dtype", "set storage_dtype to 'bfloat16'"]),
    (LAUNCHED, {"fsdp": True}, _quantized({"bits": 8}), "$.model.params.quantization.bits",
     ["FSDP cannot shard 8-bit"]),
    # kernels and compile
    (Hardware(installed=lambda m: m != "liger_kernel", cuda=True, gpus=1, capability=(8, 0),
              environ={}), {"use_liger_kernel": True}, {}, "$.training.use_liger_kernel",
     ["needs liger-kernel", "pip install 'fturun[kernels]'"]),
    (CPU, {"use_liger_kernel": True}, {}, "$.training.use_liger_kernel",
     ["Triton kernels for CUDA GPUs", "remove training.use_liger_kernel"]),
    (T4, {}, {"model": {"name": "pretrained", "params": {
        "path": MODEL, "attn_implementation": "flash_attention_2"}}},
     "$.model.params.attn_implementation",
     ["compute capability 8.0+ (Ampere or newer)", "Tesla T4", "use 'sdpa'"]),
    (Hardware(installed=lambda m: m != "flash_attn", cuda=True, gpus=1, capability=(9, 0),
              environ={}), {}, {"model": {"name": "from_config", "params": {
                  "tokenizer": MODEL, "config": {"model_type": "llama"},
                  "attn_implementation": "flash_attention_2"}}},
     "$.model.params.attn_implementation", ["needs the flash_attn package",
                                             "pip install flash-attn"]),
    (A100, {}, {"model": {"name": "pretrained", "params": {
        "path": MODEL, "attn_implementation": "flash_attention_3"}}},
     "$.model.params.attn_implementation", ["capability 9.0+ (Hopper or newer)"]),
    (Hardware(installed=lambda m: m != "triton", cuda=True, gpus=1, capability=(8, 0),
              environ={}), {"torch_compile": True}, {}, "$.training.torch_compile",
     ["needs Triton", "pip install triton"]),
    (P100, {"torch_compile_mode": "max-autotune"}, {}, "$.training.torch_compile_mode",
     ["compute capability 7.0+", "Tesla P100"]),
])
def test_rule_messages(hw, training, sections, where, fragments):
    path, message = _only(hw, training, **sections)
    assert path == where, (path, message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_what_the_hardware_supports_passes():
    qlora_fsdp = {**QLORA, "training": {"fsdp": True, "bf16": True}}
    assert _findings(LAUNCHED, qlora_fsdp["training"], model=QLORA["model"],
                     adapter=QLORA["adapter"]) == ([], [])
    assert _findings(A100, {"use_liger_kernel": True, "torch_compile": True},
                     model={"name": "pretrained", "params": {
                         "path": MODEL, "attn_implementation": "flash_attention_2"}}) == ([], [])
    # a sharded state dict is fine when no model/ is saved
    assert _findings(LAUNCHED, {"fsdp": ["full_shard", "offload"],
                                "fsdp_config": {"fsdp_state_dict_type": "SHARDED_STATE_DICT"}},
                     output={"save_model": False}) == ([], [])
    assert _findings(NOTHING, {}, model={"name": "pretrained", "params": {"path": MODEL}}) \
        == ([], [])


def test_warnings_do_not_refuse():
    problems, warnings = _findings(CPU, {"torch_compile": True})
    assert problems == [] and warnings[0][0] == "$.training.torch_compile"
    assert "compiles C++ at the first steps" in warnings[0][1]
    problems, warnings = _findings(A100, {"fsdp_config": {"version": 2}})
    assert problems == [] and warnings == [("$.training.fsdp_config", "fsdp_config is ignored "
                                            "without training.fsdp: set \"fsdp\": true")]


def test_check_hardware_raises_every_problem_located_exit_2():
    data = {"training": {"fsdp": True, "fp16": True}, **_quantized({"bits": 4}, adapter=False)}
    with pytest.raises(RecipeError) as caught:
        check_hardware(data, NOTHING, file="r.json")
    assert caught.value.exit_code == 2
    lines = str(caught.value).splitlines()
    assert "r.json::$.model.params.quantization: a quantized base model needs bitsandbytes" \
        in lines[0]
    assert any(line.startswith("r.json::$.adapter: ") for line in lines)
    assert any(line.startswith("r.json::$.training.fsdp: FSDP needs CUDA GPUs") for line in lines)
    # the older unlocated hardware rules are reported with them
    assert any(line.startswith("r.json: fp16 needs a CUDA GPU") for line in lines)


@pytest.mark.parametrize("override,where,fragment", [
    ('model.params.quantization={"bits": 4}', "$.model.params.quantization",
     "needs bitsandbytes"),
    ("training.fsdp=true", "$.training.fsdp", "FSDP needs CUDA GPUs"),
    ("training.use_liger_kernel=true", "$.training.use_liger_kernel", "needs liger-kernel"),
    ("model.params.attn_implementation=flash_attention_2", "$.model.params.attn_implementation",
     "needs the flash_attn package"),
])
def test_refused_at_run_start_before_anything_loads(cli, tmp_path, override, where, fragment):
    import importlib.util

    import torch

    if torch.cuda.is_available() or any(importlib.util.find_spec(m) for m in
                                        ("bitsandbytes", "liger_kernel", "flash_attn")):
        pytest.skip("these cases are for a CPU machine without the GPU packages")
    code, out, err = cli(LORA, override, f"training.output_dir={tmp_path}",
                         "tracking.enabled=false")
    assert code == 2, err
    # located at the override that set the value, not at the recipe file
    assert f"override '{override}'::{where}: " in err and fragment in err, err
    assert "data:" not in out and "Traceback" not in err  # before any data or model


def test_launch_refuses_fsdp_on_cpu_before_starting_processes(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CPU case")
    code, out, err = cli("launch", "--nproc", "2", LORA, "training.fsdp=true",
                         f"training.output_dir={tmp_path}", "tracking.enabled=false")
    assert code == 2 and "$.training.fsdp: FSDP needs CUDA GPUs" in err, err
    assert "launching:" not in out


# --------------------------------------------------------------------------------------------
# the quantization config


def test_bitsandbytes_config_from_params():
    import torch

    from fturun.builtin.models import quantization_config

    config = quantization_config({})  # the defaults: QLoRA's NF4
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_storage == torch.uint8  # transformers' default
    config = quantization_config({"quant_type": "fp4", "compute_dtype": "float16",
                                  "double_quant": False, "storage_dtype": "bfloat16",
                                  "skip_modules": ["classifier"]})
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_compute_dtype,
            config.bnb_4bit_use_double_quant, config.bnb_4bit_quant_storage,
            config.llm_int8_skip_modules) == ("fp4", torch.float16, False, torch.bfloat16,
                                              ["classifier"])
    config = quantization_config({"bits": 8})
    assert config.load_in_8bit and not config.load_in_4bit


def test_quantized_load_goes_to_this_process_gpu(monkeypatch):
    from fturun.builtin.models import pretrained_kwargs
    from fturun.recipe.paths import resolve_path

    monkeypatch.setenv("LOCAL_RANK", "1")
    context = make_context(task="sequence-classification", model_kwargs={"num_labels": 3})
    kwargs = pretrained_kwargs(resolve_path(MODEL), {"path": MODEL, "quantization": {"bits": 4}},
                               context)
    assert kwargs["device_map"] == {"": 1}
    assert kwargs["quantization_config"].load_in_4bit
    assert kwargs["config"].num_labels == 3
    monkeypatch.delenv("LOCAL_RANK")
    assert pretrained_kwargs(resolve_path(MODEL), {"path": MODEL, "quantization": {}},
                             context)["device_map"] == {"": 0}
    assert "device_map" not in pretrained_kwargs(resolve_path(MODEL), {"path": MODEL}, context)


def test_quantization_params_are_validated_located(registry):
    recipe = json.loads(LORA.read_text())
    recipe["model"]["params"]["quantization"] = {"bits": 3, "quant_typ": "nf4"}
    problems = {p.path: p.message for p in validate(recipe, registry, base_dir=RECIPES)}
    assert "3 is not one of: 4, 8" in problems["$.model.params.quantization.bits"]
    assert "did you mean 'quant_type'" in problems["$.model.params.quantization.quant_typ"]


# --------------------------------------------------------------------------------------------
# the fsdp schema and the FSDP config built from it


@pytest.mark.parametrize("fsdp,config", [
    (True, None), (False, None), ("full_shard auto_wrap", None), (["shard_grad_op", "offload"],
                                                                  None),
    (True, {"version": 2, "reshard_after_forward": False, "cpu_offload": True,
            "state_dict_type": "FULL_STATE_DICT", "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": "BertLayer", "activation_checkpointing": True}),
    (True, {"fsdp_version": 1, "fsdp_reshard_after_forward": "hybrid_shard",
            "backward_prefetch": "BACKWARD_PRE"}),
    (True, "fsdp_config.json"),
])
def test_fsdp_schema_accepts_what_training_arguments_takes(registry, fsdp, config):
    training = {"fsdp": fsdp} if config is None else {"fsdp": fsdp, "fsdp_config": config}
    recipe = json.loads(LORA.read_text())
    recipe["training"].update(training)
    assert validate(recipe, registry, base_dir=RECIPES) == []


def test_every_fsdp_option_of_this_transformers_is_accepted(registry):
    from transformers.trainer_utils import FSDPOption

    recipe = json.loads(LORA.read_text())
    recipe["training"]["fsdp"] = [o.value for o in FSDPOption]
    assert validate(recipe, registry, base_dir=RECIPES) == []


@pytest.mark.parametrize("training,where,fragments", [
    ({"fsdp": "hybrid"}, "$.training.fsdp", ["\"hybrid\" is not valid",
                                             "space-separated options of: full_shard"]),
    ({"fsdp": ["full_shard", "ofload"]}, "$.training.fsdp[1]", ["did you mean 'offload'"]),
    ({"fsdp": 2}, "$.training.fsdp", ["expected"]),
    ({"fsdp": True, "fsdp_config": {"verson": 2}}, "$.training.fsdp_config.verson",
     ["unknown key 'verson' (did you mean 'version'?)"]),
    ({"fsdp": True, "fsdp_config": {"state_dict_type": "FULL"}},
     "$.training.fsdp_config.state_dict_type", ["not one of", "FULL_STATE_DICT"]),
    ({"fsdp": True, "fsdp_config": {"fsdp_version": 3}}, "$.training.fsdp_config.fsdp_version",
     ["3 is not one of: 1, 2"]),
    ({"fsdp": True, "fsdp_config": {"cpu_offload": "yes"}},
     "$.training.fsdp_config.cpu_offload", ["expected boolean"]),
])
def test_fsdp_schema_refuses_bad_values_located(registry, training, where, fragments):
    recipe = json.loads(LORA.read_text())
    recipe["training"].update(training)
    problems = {p.path: p.message for p in validate(recipe, registry, base_dir=RECIPES)}
    assert where in problems, problems
    for fragment in fragments:
        assert fragment in problems[where], (fragment, problems[where])


@pytest.mark.parametrize("fsdp,config,expected", [
    (True, None, {"version": 2, "sharding_strategy": "FULL_SHARD",
                  "state_dict_type": "FULL_STATE_DICT", "cpu_offload": False}),
    (["shard_grad_op", "offload"], {"state_dict_type": "SHARDED_STATE_DICT"},
     {"version": 2, "sharding_strategy": "SHARD_GRAD_OP", "state_dict_type": "SHARDED_STATE_DICT",
      "cpu_offload": True}),
    ("hybrid_shard", {"fsdp_version": 1}, {"version": 1, "sharding_strategy": "HYBRID_SHARD",
                                           "state_dict_type": "FULL_STATE_DICT",
                                           "cpu_offload": False}),
])
def test_fsdp_config_built_and_reported(tmp_path, fsdp, config, expected):
    """What TrainingArguments hands accelerate for each form, and what engine.json records of
    it (accelerate's plugin itself needs a GPU to be made)."""
    from transformers import TrainingArguments

    from fturun.engine.distributed import describe_fsdp

    args = TrainingArguments(output_dir=str(tmp_path), fsdp=fsdp, fsdp_config=config,
                             use_cpu=True, report_to="none")
    assert args.fsdp is True and args.fsdp_plugin_args["fsdp_version"] == expected["version"]
    assert describe_fsdp(args) == expected


def test_engine_json_has_no_fsdp_without_it(registry, tmp_path):
    from fturun.engine.distributed import describe_engine
    from fturun.testing import check

    result = check(tiny_recipe(tmp_path), registry)
    info = describe_engine(result.trainer)
    assert info["fsdp"] is None and info["deepspeed"] is None


# --------------------------------------------------------------------------------------------
# config overrides


def test_config_overrides_applied_before_loading(registry):
    context = make_context(task="sequence-classification", model_kwargs={"num_labels": 2})
    model, _ = build_component(registry, "model", {"name": "pretrained", "params": {
        "path": MODEL, "config_overrides": {"hidden_dropout_prob": 0.3,
                                            "attention_probs_dropout_prob": 0.25}}}, context)
    assert model.config.hidden_dropout_prob == 0.3 and model.config.num_labels == 2
    assert model.bert.embeddings.dropout.p == 0.3  # built with it, not set afterwards
    with pytest.raises(RecipeRuntimeError, match=r"model.params.config_overrides.hiden_dropout_"
                                                 r"prob: BertConfig has no field 'hiden_dropout"
                                                 r"_prob' \(did you mean 'hidden_dropout_prob'"):
        build_component(registry, "model", {"name": "pretrained", "params": {
            "path": MODEL, "config_overrides": {"hiden_dropout_prob": 0.3}}}, context)


@pytest.fixture
def tiny_llama(tmp_path, tokenizer):
    """A 1-layer Llama with rotary positions saved as a pretrained folder (64 positions)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path / "tiny-llama"
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_position_check_reads_the_overridden_config(registry, tmp_path, tiny_llama):
    from fturun.testing import check

    model = {"name": "pretrained", "params": {
        "path": str(tiny_llama), "tokenizer": MODEL,
        "config_overrides": {"max_position_embeddings": 16,
                             "rope_scaling": {"rope_type": "linear", "factor": 2.0}}}}
    recipe = tiny_recipe(tmp_path, model=model)
    recipe["data"]["max_length"] = 32  # fits the saved 64 positions, not the overridden 16
    with pytest.raises(RecipeRuntimeError, match="data.max_length=32 is larger than the "
                                                 "model's maximum of 16 positions"):
        check(recipe, registry)
    recipe["data"]["max_length"] = 16
    result = check(recipe, registry)  # trains with the overridden rope scaling
    config = result.trainer.model.config
    assert config.max_position_embeddings == 16
    assert config.rope_parameters["rope_type"] == "linear"
    assert config.rope_parameters["factor"] == 2.0
    assert config.rope_parameters["rope_theta"] == 10000.0  # merged, not replaced
    assert len(result.losses) == 2


def test_bad_rope_override_is_refused(registry, tiny_llama):
    context = make_context(task="sequence-classification", model_kwargs={"num_labels": 2})
    with pytest.raises(RecipeRuntimeError, match="model.params.config_overrides: "):
        build_component(registry, "model", {"name": "pretrained", "params": {
            "path": str(tiny_llama), "tokenizer": MODEL,
            "config_overrides": {"rope_scaling": {"rope_type": "linear"}}}}, context)


# --------------------------------------------------------------------------------------------
# merge_adapter over a quantized (or sharded) base: into a reloaded one


def test_merge_into_a_base_reloaded_in_the_compute_dtype(registry, tmp_path, capsys):
    import torch

    from fturun.run.build import Build
    from fturun.run.outputs import merge_into_reloaded_base, reload_reason

    context = make_context(task="sequence-classification", model_kwargs={"num_labels": 2})
    model, tokenizer = build_component(registry, "model", {"name": "pretrained",
                                                           "params": {"path": MODEL}}, context)
    context.model, context.tokenizer = model, tokenizer
    adapted = build_component(registry, "adapter", {"name": "lora", "params": {
        "r": 4, "target_modules": ["query", "value"]}}, context)
    with torch.no_grad():  # a trained adapter: not the identity
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    adapted.save_pretrained(tmp_path / "model")
    data = {"model": {"name": "pretrained", "params": {
        "path": MODEL, "quantization": {"bits": 4, "compute_dtype": "bfloat16"}}},
        "adapter": "lora", "output": {"merge_adapter": True}}
    assert reload_reason(data) == "the base was loaded quantized"
    assert reload_reason({"training": {"fsdp": True}}) == "the trained base is sharded by FSDP"
    assert reload_reason({"model": {"name": "pretrained", "params": {"path": MODEL}}}) is None
    build = Build(context=context, splits={}, model=adapted, tokenizer=tokenizer,
                  registry=registry)
    merged = merge_into_reloaded_base(build, data, str(tmp_path / "model"))
    assert "loaded again, unquantized, in bfloat16" in capsys.readouterr().out
    assert next(merged.parameters()).dtype == torch.bfloat16
    assert not any("lora" in name for name, _ in merged.named_parameters())
    expected = adapted.merge_and_unload().bert.encoder.layer[0].attention.self.query.weight
    got = merged.bert.encoder.layer[0].attention.self.query.weight
    assert torch.allclose(got.float(), expected.float(), atol=1e-2)
