"""What a recipe asks of the hardware, read from the recipe alone: rows per device and
accumulation, tokens per row, weight dtype and precision, optimizer, gradient checkpointing,
attention, quantization, and how DeepSpeed or FSDP shard the state over the devices."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..engine.optim_names import BNB_OPTIMIZERS
from ..recipe.refs import component_ref

#: bytes a value of each dtype takes
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class Settings:
    """The figures of one configuration of a run (a suggestion is another one)."""

    batch: int
    accumulation: int
    devices: int
    seq_len: int
    weight_dtype: str
    autocast: str | None  # "bf16" / "fp16" mixed precision over float32 weights, else None
    optimizer: str
    checkpointing: bool
    attention: str
    quant_bits: int | None
    zero_stage: int  # 0 none; 1/2/3 DeepSpeed ZeRO; FSDP full_shard is 3, shard_grad_op 2
    offload_optimizer: bool
    offload_params: bool
    deepspeed: bool
    label_smoothing_tokens: bool = False

    @property
    def effective_batch(self) -> int:
        return self.batch * self.accumulation * self.devices

    def but(self, **changes) -> Settings:
        """A copy with ``changes``."""
        return replace(self, **changes)


def training_section(data: dict) -> dict:
    return dict(data.get("training") or {})


def read_settings(data: dict, deepspeed_config: dict | None, devices: int, cuda: bool,
                  bf16: bool, config_fields: dict) -> Settings:
    """The :class:`Settings` of a validated recipe planned for ``devices`` devices (``cuda``:
    GPUs, with bfloat16 when ``bf16``)."""
    training = training_section(data)
    _, model_params = component_ref(data["model"])
    dtype = model_params.get("dtype", "float32")
    if dtype == "auto":
        dtype = str(config_fields.get("torch_dtype") or config_fields.get("dtype") or "float32")
    quant = model_params.get("quantization")
    batch = training.get("per_device_train_batch_size", 8)
    return Settings(
        batch=batch if isinstance(batch, int) else 1,
        accumulation=int(training.get("gradient_accumulation_steps", 1)),
        devices=max(int(devices), 1), seq_len=sequence_length(data),
        weight_dtype=dtype if dtype in DTYPE_BYTES else "float32",
        autocast=_autocast(training, dtype, cuda, bf16, deepspeed_config),
        optimizer=optimizer_name(data),
        checkpointing=bool(training.get("gradient_checkpointing", False)),
        attention=model_params.get("attn_implementation") or "sdpa",
        quant_bits=(quant or {}).get("bits", 4) if quant is not None else None,
        **_sharding(training, deepspeed_config))


def sequence_length(data: dict) -> int:
    """Tokens in a row at most: ``data.block_size`` for blocks, else ``data.max_length``."""
    from ..data import DEFAULT_MAX_LENGTH

    section = data.get("data") or {}
    return int(section.get("block_size") or section.get("max_length") or DEFAULT_MAX_LENGTH)


def optimizer_name(data: dict) -> str:
    """``optimizer`` component's name, else ``training.optim`` (the Trainer's default
    ``adamw_torch``)."""
    if data.get("optimizer") is not None:
        return component_ref(data["optimizer"])[0]
    return str(training_section(data).get("optim", "adamw_torch"))


def _autocast(training, dtype, cuda, bf16, deepspeed_config) -> str | None:
    """The mixed precision the run gets: the recipe's ``bf16`` / ``fp16``, else fturun's
    default on CUDA for a float32 model (:mod:`fturun.engine.speed_defaults`): bf16 where the
    GPU has it."""
    if training.get("bf16"):
        return "bf16"
    if training.get("fp16"):
        return "fp16"
    ds = deepspeed_config or {}
    for key in ("bf16", "fp16"):
        if (ds.get(key) or {}).get("enabled") is True:
            return key
    if cuda and dtype == "float32" and "bf16" not in training and "fp16" not in training \
            and deepspeed_config is None:
        return "bf16" if bf16 else "fp16"
    return None


def _sharding(training: dict, ds: dict | None) -> dict:
    zero = (ds or {}).get("zero_optimization") or {}
    stage = int(zero.get("stage", 0) or 0) if ds is not None else 0

    def offloaded(key):
        device = (zero.get(key) or {}).get("device", "none")
        return device not in (None, "none")

    fsdp = training.get("fsdp") or ""
    fsdp = " ".join(fsdp) if isinstance(fsdp, list) else str(fsdp)
    if "full_shard" in fsdp or "hybrid_shard" in fsdp:
        stage = 3
    elif "shard_grad_op" in fsdp:
        stage = 2
    return {"zero_stage": stage, "deepspeed": ds is not None,
            "offload_optimizer": offloaded("offload_optimizer") or "offload" in fsdp,
            "offload_params": offloaded("offload_param") or "offload" in fsdp}


def is_8bit_optimizer(name: str) -> bool:
    """Whether ``name`` keeps its states in 8 bits (bitsandbytes)."""
    return "8bit" in name or (name in BNB_OPTIMIZERS and "32bit" not in name
                              and name not in ("ademamix", "lion_32bit"))
