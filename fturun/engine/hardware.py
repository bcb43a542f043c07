"""Precision, memory and launch options checked against this machine at run start, before any data
or model is loaded: each problem says what to change.

The rules (all problems are reported at once):

- ``fp16`` / ``fp16_full_eval`` need a CUDA GPU;
- ``bf16`` / ``bf16_full_eval`` need a CUDA GPU with bfloat16 (compute capability 8.0+, Ampere or
  newer); on CPU fturun refuses bf16 too (CPU autocast is slow without AMX and changes results);
- ``fp16`` and ``bf16`` together: keep one; ``tf32`` needs an Ampere-or-newer GPU;
- an 8-bit/paged optimizer (bitsandbytes: ``adamw_bnb_8bit``, ``paged_adamw_8bit``, ``lion_8bit``,
  ``ademamix``, ...) needs bitsandbytes and a CUDA GPU; optimizers from other packages (GaLore,
  APOLLO, LOMO, schedule-free, GrokAdamW, torchao low-bit, optimi, torchdistx, torch_xla,
  torch_npu) need their package;
- ``auto_find_batch_size`` retries after CUDA out-of-memory errors only: refused on CPU (there the
  operating system kills the process instead) and with several processes (each would search on
  its own and they could settle on different sizes); not with DeepSpeed ZeRO-3;
- ``gradient_checkpointing`` / ``activation_checkpointing``: the model must support it (checked
  once the model is loaded, :func:`check_model`);
- Adafactor and gradient accumulation run anywhere; nothing to check;
- DeepSpeed needs the ``deepspeed`` package, and is dropped by ``use_cpu`` / ``accelerate launch
  --cpu`` (refused); under ZeRO-Offload of the optimizer accelerate swaps any optimizer for
  DeepSpeed's CPU Adam/Adagrad, so an optimizer other than Adam(W)/Adagrad is refused there
  (unless the DeepSpeed config names its own);
- several processes: ``nccl`` needs CUDA; no more processes on a node than it has GPUs;
- quantized base models, FSDP, Liger kernels, flash attention and ``torch_compile``:
  :mod:`fturun.engine.rules` (located at their recipe key, exit 2).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.dist import world_size
from ..core.errors import Problem, RecipeError, RecipeRuntimeError
from ..core.redaction import environ_snapshot
from ..recipe.refs import component_name
from .optim_names import BNB_OPTIMIZERS
from .rules import big_model_findings

#: optim name (or prefix ending "_") -> (module, what to pip install)
OPTIMIZER_PACKAGES = {
    "galore_": ("galore_torch", "galore-torch"),
    "apollo_": ("apollo_torch", "apollo-torch"),
    "lomo": ("lomo_optim", "lomo-optim"),
    "adalomo": ("lomo_optim", "lomo-optim"),
    "grokadamw": ("grokadamw", "grokadamw"),
    "schedule_free_": ("schedulefree", "schedulefree"),
    "stable_adamw": ("optimi", "torch-optimi"),
    "adamw_torch_4bit": ("torchao", "torchao"),
    "adamw_torch_8bit": ("torchao", "torchao"),
    "adamw_anyprecision": ("torchdistx", "torchdistx"),
    "adamw_torch_xla": ("torch_xla", "torch_xla (TPU)"),
    "adamw_torch_npu_fused": ("torch_npu", "torch_npu (Ascend NPU)"),
}


@dataclass
class Hardware:
    """What the checks need to know about this machine (tests pass made-up ones)."""

    cuda: bool = False
    gpus: int = 0
    gpu_name: str = ""
    capability: tuple = (0, 0)
    bf16: bool = False
    installed: Callable[[str], bool] = field(
        default=lambda module: importlib.util.find_spec(module) is not None)
    environ: dict = field(default_factory=environ_snapshot)

    @classmethod
    def detect(cls) -> Hardware:
        """This machine."""
        if not cuda_available():
            return cls()
        import torch

        try:
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch
            bf16 = torch.cuda.is_bf16_supported()
        return cls(cuda=True, gpus=torch.cuda.device_count(),
                   gpu_name=torch.cuda.get_device_name(0),
                   capability=tuple(torch.cuda.get_device_capability(0)), bf16=bf16)

    def describe_gpu(self) -> str:
        major, minor = self.capability
        return f"{self.gpu_name or 'this GPU'} (compute capability {major}.{minor})"


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (the one CUDA probe; False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def cuda_device_count() -> int:
    """CUDA GPUs torch sees (0 without CUDA or without torch)."""
    if not cuda_available():
        return 0
    import torch

    return torch.cuda.device_count()


def release_cuda_memory() -> None:
    """Return cached CUDA memory to the driver (between search trials); nothing without CUDA."""
    if cuda_available():
        import torch

        torch.cuda.empty_cache()


def optimizer_names(data: dict) -> list:
    """The ``optim`` names a recipe uses: ``training.optim`` and an ``optimizer`` component named
    after one."""
    names = []
    training = data.get("training") or {}
    if isinstance(training.get("optim"), str):
        names.append(("training.optim", training["optim"]))
    name = component_name(data.get("optimizer"))
    if name is not None:
        names.append(("optimizer", name))
    return names


def hardware_problems(data: dict, hw: Hardware, deepspeed_config: dict | None = None) -> list:
    """Every reason this recipe cannot run as written on ``hw``; [] when it can.
    ``deepspeed_config``: the DeepSpeed config read from its file (default: the inline one)."""
    training = data.get("training") or {}
    return (_precision_problems(training, hw) + _optimizer_problems(data, hw)
            + _memory_problems(training, hw) + _deepspeed_problems(data, hw, deepspeed_config)
            + _process_problems(training, hw))


def _precision_problems(training: dict, hw: Hardware) -> list:
    problems = []
    add = problems.append
    for flag in ("fp16", "fp16_full_eval"):
        if training.get(flag) and not hw.cuda:
            add(f"{flag} needs a CUDA GPU; remove training.{flag} or run on a GPU")
    for flag in ("bf16", "bf16_full_eval"):
        if not training.get(flag):
            continue
        if not hw.cuda:
            add(f"{flag} needs a CUDA GPU; remove training.{flag} or run on a GPU")
        elif not hw.bf16:
            add(f"{flag} needs a GPU with bfloat16 support (compute capability 8.0+: Ampere or "
                f"newer); {hw.describe_gpu()} has none: use training.fp16 instead")
    if training.get("fp16") and training.get("bf16"):
        add("training.fp16 and training.bf16 are both set; keep one (bf16 where the GPU has it)")
    if training.get("tf32") and (not hw.cuda or hw.capability < (8, 0)):
        where = hw.describe_gpu() if hw.cuda else "this machine has no CUDA GPU"
        add(f"tf32 needs an NVIDIA GPU of compute capability 8.0+ (Ampere or newer); {where}: "
            "remove training.tf32")
    return problems


def _optimizer_problems(data: dict, hw: Hardware) -> list:
    problems = []
    add = problems.append
    for where, name in optimizer_names(data):
        if name in BNB_OPTIMIZERS:
            if not hw.installed("bitsandbytes"):
                add(f"{where} '{name}' needs bitsandbytes: pip install bitsandbytes (on a CUDA "
                    "GPU), or use 'adamw_torch' / 'adafactor' to save memory on CPU")
            elif not hw.cuda:
                add(f"{where} '{name}' runs on a CUDA GPU and none is present; use "
                    "'adamw_torch' or 'adafactor' on CPU")
        for key, (module, pip_name) in OPTIMIZER_PACKAGES.items():
            if (name.startswith(key) if key.endswith("_") else name == key) and \
                    not hw.installed(module):
                add(f"{where} '{name}' needs the {module} package: pip install {pip_name}")
                break
    return problems


def _memory_problems(training: dict, hw: Hardware) -> list:
    problems = []
    add = problems.append
    if training.get("auto_find_batch_size"):
        processes = world_size(hw.environ)
        if not hw.cuda:
            add("auto_find_batch_size retries after CUDA out-of-memory errors and this machine "
                "has no CUDA GPU (on CPU the operating system kills the process instead); "
                "remove training.auto_find_batch_size and set per_device_train_batch_size")
        elif processes > 1:
            add(f"auto_find_batch_size with {processes} processes: each would search on its "
                "own and they could settle on different batch sizes; find the size in one "
                "process, then set per_device_train_batch_size")
        if not hw.installed("accelerate"):
            add("auto_find_batch_size needs accelerate: pip install accelerate")
    return problems


def _deepspeed_problems(data: dict, hw: Hardware, deepspeed_config: dict | None) -> list:
    deepspeed = data.get("deepspeed")
    if deepspeed is None:
        return []
    training = data.get("training") or {}
    problems = []
    add = problems.append
    if not hw.installed("deepspeed"):
        add("the recipe's deepspeed section needs DeepSpeed: pip install 'fturun[deepspeed]' "
            "(or remove deepspeed)")
    if training.get("use_cpu"):
        add("training.use_cpu drops DeepSpeed (the Trainer then ignores the deepspeed "
            "section); remove use_cpu: without a GPU DeepSpeed runs on the CPU by itself")
    elif str(hw.environ.get("ACCELERATE_USE_CPU", "")).lower() in ("1", "true", "yes"):
        add("'accelerate launch --cpu' drops DeepSpeed (the Trainer then ignores the "
            "deepspeed section); launch with torchrun --nproc_per_node N -m fturun RECIPE, "
            "or accelerate launch without --cpu")
    config = deepspeed_config if deepspeed_config is not None else \
        deepspeed if isinstance(deepspeed, dict) else None
    if config is not None:
        problems += deepspeed_problems(config, training, optimizer_names(data))
    return problems


def _process_problems(training: dict, hw: Hardware) -> list:
    if world_size(hw.environ) <= 1:
        return []
    problems = []
    if training.get("ddp_backend") == "nccl" and not hw.cuda:
        problems.append("training.ddp_backend 'nccl' needs CUDA GPUs; use 'gloo' on CPU (the "
                        "default there)")
    local = hw.environ.get("LOCAL_WORLD_SIZE")
    if hw.cuda and local and local.isdigit() and int(local) > hw.gpus and \
            not training.get("use_cpu"):
        problems.append(f"{local} processes on this node but {hw.gpus} CUDA GPU"
                        f"{'s' if hw.gpus != 1 else ''}: start one process per GPU "
                        f"(--nproc_per_node {hw.gpus})")
    return problems


#: optimizers accelerate hands to DeepSpeed's CPU optimizers under ZeRO-Offload as what they are
OFFLOADABLE = frozenset({"adamw_torch", "adamw_torch_fused", "torch_adam", "torch_adamw",
                         "adagrad", "torch_adagrad"})


def deepspeed_problems(config: dict, training: dict, optimizers=()) -> list:
    """What DeepSpeed (or accelerate for it) would refuse, or silently change, once the engine
    starts. ``optimizers``: the recipe's (where, optim name) pairs."""
    problems = []
    zero = config.get("zero_optimization") if isinstance(config.get("zero_optimization"),
                                                         dict) else {}
    offload = zero.get("offload_optimizer") if isinstance(zero.get("offload_optimizer"),
                                                          dict) else {}
    if offload.get("device") in ("cpu", "nvme") and "optimizer" not in config:
        for where, name in optimizers:
            if name not in OFFLOADABLE:
                problems.append(
                    f"{where} '{name}' with deepspeed.zero_optimization.offload_optimizer: "
                    "under ZeRO-Offload accelerate swaps the optimizer for DeepSpeed's CPU Adam "
                    f"or Adagrad, so '{name}' would not run; use adamw_torch (or adagrad), or "
                    "name the optimizer in the DeepSpeed config's \"optimizer\" section")
    if training.get("auto_find_batch_size") and zero.get("stage") == 3:
        problems.append("auto_find_batch_size does not work with DeepSpeed ZeRO-3; use stage "
                        "1-2 or set per_device_train_batch_size")
    return problems


def check_hardware(data: dict, hw: Hardware | None = None,
                   deepspeed_config: dict | None = None, file: str = "recipe",
                   locate: Callable | None = None) -> None:
    """Raise :class:`RecipeRuntimeError` with every problem of :func:`hardware_problems`; when
    a big-model rule (:mod:`fturun.engine.rules`) fails too, a :class:`RecipeError` (exit 2)
    with every problem, each at its key where ``locate`` (``Recipe.locate``) says the value
    came from (a line of ``file``, an override). Big-model warnings are printed."""
    hw = hw or Hardware.detect()
    problems = hardware_problems(data, hw, deepspeed_config)
    located, warnings = big_model_findings(data, hw)
    for path, message in warnings:
        print(f"warning: {path[2:]}: {message}", file=sys.stderr)
    if located:
        raise RecipeError([Problem.located(locate, p, message, file) for p, message in located]
                          + [Problem(file, "", message) for message in problems])
    if len(problems) == 1:
        raise RecipeRuntimeError(problems[0])
    if problems:
        raise RecipeRuntimeError("this machine cannot run the recipe as written:\n  "
                                 + "\n  ".join(problems))


def check_model(model, training: dict) -> None:
    """Options that depend on the loaded model: gradient checkpointing needs its support."""
    wanted = training.get("gradient_checkpointing") or training.get("activation_checkpointing")
    if not wanted:
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        key = "gradient_checkpointing" if training.get("gradient_checkpointing") else \
            "activation_checkpointing"
        raise RecipeRuntimeError(f"training.{key}: {type(base).__name__} does not support "
                                 f"gradient checkpointing; remove training.{key}")
