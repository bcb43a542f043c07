"""Big-model options checked against this machine before anything loads, each located at its
recipe key: quantized base models (QLoRA), FSDP, kernels (Liger, flash attention) and
``torch.compile``. :func:`fturun.engine.hardware.check_hardware` reports them with the other
hardware
rules (exit 2, every problem at once).

- ``model.params.quantization`` (bitsandbytes 4/8-bit loading): needs the ``bitsandbytes``
  package and a CUDA GPU; needs an ``adapter`` (a quantized model cannot be fully fine-tuned);
  ``quant_type`` / ``double_quant`` / ``storage_dtype`` are 4-bit settings; a ``bfloat16``
  compute dtype needs an Ampere-or-newer GPU. ``output.merge_adapter`` then merges into a base
  reloaded in the compute dtype (a 4-bit base cannot hold merged weights);
- ``training.fsdp``: not with ``deepspeed``; a CUDA GPU (accelerate builds FSDP only on GPUs:
  on CPU it silently trains plain DDP instead); a launcher (``fturun launch --nproc N``, one
  process per GPU, 1 on one GPU: a plain process gets no FSDP either); FSDP2 shards with
  ``full_shard`` / ``shard_grad_op`` only; ``model/`` (and ``output.merge_adapter``) need the
  state dict gathered in full (``fsdp_config.state_dict_type`` ``FULL_STATE_DICT``, the
  default); a 4-bit base under FSDP needs ``quantization.storage_dtype`` equal to
  ``model.params.dtype`` (FSDP flattens parameters of one dtype), and 8-bit cannot be sharded;
- ``training.use_liger_kernel``: the ``liger-kernel`` package and a CUDA GPU (Triton kernels);
- ``attn_implementation: "flash_attention_2"``: the ``flash_attn`` package and an Ampere-or-newer
  GPU; ``"flash_attention_3"``: ``flash_attn_interface`` and a Hopper GPU;
- ``training.torch_compile`` (or a compile backend/mode): on a GPU the default inductor backend
  needs Triton and compute capability 7.0+ (refused otherwise); on CPU, or over a quantized
  model, it is only warned about (it compiles C++ at the first steps, and bitsandbytes layers
  break the graph).
"""

from __future__ import annotations

from functools import cache

from ..core.suggest import suggest

#: FSDP2 (``fsdp_config.version`` 2, the default) shards only these ways
FSDP2_STRATEGIES = ("full_shard", "shard_grad_op")
FOUR_BIT_ONLY = ("quant_type", "double_quant", "storage_dtype")


def fsdp_enabled(training: dict) -> bool:
    """Whether ``training.fsdp`` turns FSDP on (``true``, a non-empty string or list)."""
    return bool(training.get("fsdp"))


def fsdp_items(training: dict) -> list:
    """The legacy ``fsdp`` options (``"full_shard auto_wrap"`` or a list of them)."""
    value = training.get("fsdp")
    if isinstance(value, str):
        return value.split()
    return list(value) if isinstance(value, list) else []


def fsdp_setting(training: dict, key: str, default=None):
    """A ``training.fsdp_config`` key (also written ``fsdp_<key>``); ``default`` when unset or
    when the config is a file path."""
    config = training.get("fsdp_config")
    if not isinstance(config, dict):
        return default
    return config.get(key, config.get(f"fsdp_{key}", default))


def model_params(data: dict) -> dict:
    model = data.get("model")
    return (model.get("params") or {}) if isinstance(model, dict) else {}


def big_model_findings(data: dict, hw) -> tuple:
    """``(problems, warnings)`` of the big-model options, each ``(json_path, message)``."""
    problems, warnings = [], []
    _quantization_rules(data, hw, problems.append)
    _fsdp_rules(data, hw, problems.append, warnings.append)
    _kernel_rules(data, hw, problems.append)
    _compile_rules(data, hw, problems.append, warnings.append)
    return problems, warnings


def _quantization_rules(data: dict, hw, add) -> None:
    params = model_params(data)
    quant = params.get("quantization")
    if not isinstance(quant, dict):
        return
    where = "$.model.params.quantization"
    if not hw.installed("bitsandbytes"):
        add((where, "a quantized base model needs bitsandbytes: pip install "
                    "'fturun[quantization]' (bitsandbytes, on a CUDA GPU), or remove "
                    "model.params.quantization"))
    if not hw.cuda:
        add((where, "bitsandbytes quantization runs on a CUDA GPU and this machine has none; "
                    "remove model.params.quantization (and train the model in float32 on "
                    "CPU)"))
    if data.get("adapter") is None:
        add(("$.adapter", "a quantized base model cannot be fully fine-tuned (its 4/8-bit "
                          "weights take no gradient): add an adapter, e.g. \"adapter\": "
                          "{\"name\": \"lora\"} (QLoRA), or remove model.params.quantization"))
    if quant.get("bits") == 8:
        for key in FOUR_BIT_ONLY:
            if key in quant:
                add((f"{where}.{key}", f"{key} is a 4-bit setting; remove it or set "
                                       "model.params.quantization.bits to 4"))
    if hw.cuda and quant.get("compute_dtype") == "bfloat16" and not hw.bf16:
        add((f"{where}.compute_dtype", f"bfloat16 needs compute capability 8.0+ (Ampere or "
                                       f"newer); {hw.describe_gpu()} has none: use "
                                       "'float16'"))


def _fsdp_rules(data: dict, hw, add, warn) -> None:
    training = data.get("training") or {}
    if not fsdp_enabled(training):
        if training.get("fsdp_config") is not None:
            warn(("$.training.fsdp_config", "fsdp_config is ignored without training.fsdp: "
                                            "set \"fsdp\": true"))
        return
    where = "$.training.fsdp"
    if data.get("deepspeed") is not None:
        add((where, "FSDP and DeepSpeed both shard the model: keep one (remove training.fsdp "
                    "or the deepspeed section)"))
    if not hw.cuda or training.get("use_cpu"):
        add((where, "FSDP needs CUDA GPUs: accelerate builds FSDP only on GPUs (on CPU it "
                    "would silently train plain DDP); remove training.fsdp, or use DDP "
                    "(fturun launch --nproc N RECIPE) or deepspeed on CPU"))
    elif not ({"LOCAL_RANK", "LOCAL_WORLD_SIZE"} & set(hw.environ)):
        add((where, "FSDP needs a launcher, one process per GPU (a plain process gets no "
                    f"FSDP): fturun launch --nproc {max(hw.gpus, 1)} RECIPE (--nproc 1 on "
                    "one GPU), or torchrun --nproc_per_node N -m fturun RECIPE"))
    version = fsdp_setting(training, "version", 2)
    for item in fsdp_items(training):
        if item not in FSDP2_STRATEGIES + ("offload", "auto_wrap") and str(version) == "2":
            add((where, f"'{item}' is an FSDP1 sharding strategy; FSDP2 (fsdp_config.version "
                        "2, the default) shards with 'full_shard' or 'shard_grad_op' "
                        "(fsdp_config.reshard_after_forward true/false)"))
    output = data.get("output") or {}
    if fsdp_setting(training, "state_dict_type", "FULL_STATE_DICT") != "FULL_STATE_DICT" and \
            (output.get("save_model", True) or output.get("merge_adapter")):
        add(("$.training.fsdp_config.state_dict_type",
             "model/ (and output.merge_adapter) need the state dict gathered in full: the "
             "Trainer saves no model from a sharded state dict; set it to 'FULL_STATE_DICT' "
             "(gathered on rank 0 before saving), or output.save_model=false"))
    _qlora_fsdp_rules(data, add)


def _qlora_fsdp_rules(data: dict, add) -> None:
    params = model_params(data)
    quant = params.get("quantization")
    if not isinstance(quant, dict):
        return
    where = "$.model.params.quantization"
    if quant.get("bits") == 8:
        add((f"{where}.bits", "FSDP cannot shard 8-bit bitsandbytes weights; use bits 4 with "
                              "storage_dtype, or remove training.fsdp"))
        return
    dtype = params.get("dtype", "float32")
    if quant.get("storage_dtype") != dtype or dtype == "auto":
        wanted = dtype if dtype in ("bfloat16", "float16", "float32") else "bfloat16"
        add((f"{where}.storage_dtype",
             "QLoRA under FSDP needs the 4-bit weights stored in the dtype of the other "
             f"parameters (FSDP flattens one dtype): set storage_dtype to '{wanted}' and "
             f"model.params.dtype to '{wanted}'"))


def attention(data: dict) -> str | None:
    """The recipe's ``model.params.attn_implementation``."""
    value = model_params(data).get("attn_implementation")
    return value if isinstance(value, str) else None


def _kernel_rules(data: dict, hw, add) -> None:
    training = data.get("training") or {}
    if training.get("use_liger_kernel"):
        where = "$.training.use_liger_kernel"
        if not hw.installed("liger_kernel"):
            add((where, "Liger kernels: use_liger_kernel needs liger-kernel: pip install "
                        "'fturun[kernels]' (liger-kernel), or remove training.use_liger_kernel"))
        if not hw.cuda:
            add((where, "Liger kernels are Triton kernels for CUDA GPUs and this machine has "
                        "none; remove training.use_liger_kernel"))
    wanted = {"flash_attention_2": ("flash_attn", "flash-attn", (8, 0), "Ampere"),
              "flash_attention_3": ("flash_attn_interface", "flash-attn-3 (built from the "
                                    "flash-attention repo's hopper/ folder)", (9, 0), "Hopper")}
    attn = attention(data)
    if attn is not None and attention_problem(attn):
        add(("$.model.params.attn_implementation", attention_problem(attn)))
    if attn not in wanted:
        return
    module, pip_name, capability, family = wanted[attn]
    where = "$.model.params.attn_implementation"
    if not hw.installed(module):
        add((where, f"'{attn}' needs the {module} package: pip install {pip_name}; or use "
                    "'sdpa'"))
    if not hw.cuda or hw.capability < capability:
        on = hw.describe_gpu() if hw.cuda else "this machine has no CUDA GPU"
        add((where, f"'{attn}' needs an NVIDIA GPU of compute capability "
                    f"{capability[0]}.{capability[1]}+ ({family} or newer); {on}: use 'sdpa'"))


def _compile_rules(data: dict, hw, add, warn) -> None:
    training = data.get("training") or {}
    keys = [k for k in ("torch_compile", "torch_compile_backend", "torch_compile_mode")
            if training.get(k)]
    if not keys:
        return
    where = f"$.training.{keys[0]}"
    for key, value in (("torch_compile_backend", training.get("torch_compile_backend")),
                       ("torch_compile_mode", training.get("torch_compile_mode"))):
        known = compile_choices(key) if isinstance(value, str) else ()
        if known and value not in known:
            add((f"$.training.{key}", f"'{value}' is not a torch.compile "
                                      f"{key.rsplit('_', 1)[1]}{suggest(value, known)}; "
                                      "known: " + ", ".join(
                                          k for k in known if "TESTING" not in k
                                          and "minifier" not in k)))
    backend = training.get("torch_compile_backend") or "inductor"
    if hw.cuda and backend == "inductor":
        if not hw.installed("triton"):
            add((where, "torch.compile's inductor backend needs Triton on a GPU: pip install "
                        "triton, or remove training.torch_compile"))
        elif hw.capability < (7, 0):
            add((where, f"torch.compile's inductor backend needs compute capability 7.0+ "
                        f"(Triton); {hw.describe_gpu()}: remove training.torch_compile"))
    if not hw.cuda:
        warn((where, "torch.compile on CPU compiles C++ at the first steps (minutes on few "
                     "cores) and seldom pays off for a short run"))
    if isinstance(model_params(data).get("quantization"), dict):
        warn((where, "torch.compile over bitsandbytes layers breaks the graph at every "
                     "quantized matmul; expect little speed-up"))



def attention_problem(value: str) -> str | None:
    """Why transformers would refuse ``attn_implementation`` ``value`` (after loading the
    data), else None: not ``eager``, a registered attention function (``sdpa``,
    ``flash_attention_2``, ``flex_attention``, ``paged|...``) nor a Hub kernel (``org/repo``)."""
    from transformers.integrations.hub_kernels import is_kernel
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    bare = value.split("|", 1)[1] if value.startswith("paged|") else value
    if bare in known or value in known or is_kernel(value):
        return None
    return (f"'{value}' is not an attention implementation{suggest(value, known)}; use one of "
            f"{', '.join(known)} (or a Hub kernel, 'org/repo'), or remove it for the model's "
            "default")


@cache
def compile_choices(key: str) -> tuple:
    """The ``torch_compile_backend`` names torch registers, or the ``torch_compile_mode`` names
    of inductor (() when torch cannot say)."""
    try:
        if key == "torch_compile_backend":
            import torch._dynamo

            return tuple(torch._dynamo.list_backends(exclude_tags=()))
        import torch._inductor

        return tuple(torch._inductor.list_mode_options())
    except (ImportError, AttributeError):
        return ()
