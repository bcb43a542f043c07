"""Several processes, one recipe: fturun under ``torchrun`` / ``accelerate launch`` (DDP across GPUs
and nodes) and with DeepSpeed ZeRO.

fturun manages no processes itself. ``torchrun --nproc_per_node N -m fturun RECIPE`` (or
``accelerate launch -m fturun RECIPE``) starts N copies of the ordinary command; each copy:

- reads and validates the same recipe;
- prepares the data with the main process of its node first (``dist.main_process_first``): it
  fills the ``datasets`` cache, the others then read it;
- builds the same model and trains its shard of every batch (DDP; gloo on CPU, nccl on GPU);
- only rank 0 tracks the run in MLflow, saves the final model and writes the output files;
- stops with the others at the same step on Ctrl-C/SIGTERM (``dist.StopVote``).

Two Trainer pitfalls are handled here: on CPU, accelerate sees no distributed setup unless told
``use_cpu`` (each process would train a whole copy alone) or, for DeepSpeed, given a prepared
state (:func:`deepspeed_cpu_state`); and mean-loss heads are marked so the Trainer does not
multiply their loss by the number of processes (:func:`fix_loss_scaling`). What really ran is
recorded by :func:`EngineReport` in ``OUTPUT_DIR/engine.json``.

Where a process stands (rank, main process, barrier, stop vote) is :mod:`fturun.core.dist`; the
``fturun launch`` command that execs torchrun is :mod:`fturun.cli.launch`.

A recipe with a ``deepspeed`` section run as a plain ``fturun RECIPE`` (one process, no launcher)
gets the single-rank environment a launcher would set (:func:`single_process_environment`):
DeepSpeed then starts in-process instead of reaching for ``mpi4py``.
"""

from __future__ import annotations

import copy
import json
import os

from ..core.dist import int_env, world_size
from ..core.errors import RecipeRuntimeError
from ..core.io import write_json
from ..recipe.paths import resolve_path

# --------------------------------------------------------------------------------------------
# what the recipe's TrainingArguments get for the launch


def deepspeed_config(recipe):
    """The recipe's ``deepspeed`` entry as TrainingArguments takes it: a copy of the inline
    object (the Trainer fills its ``"auto"`` values in place), or the JSON file's absolute path
    (relative paths are relative to the recipe). None without one."""
    config = recipe.data.get("deepspeed")
    if config is None:
        return None
    if isinstance(config, dict):
        return copy.deepcopy(config)
    path = os.path.abspath(resolve_path(config, recipe.base_dir))
    if not os.path.isfile(path):
        raise RecipeRuntimeError(f"deepspeed: config file '{config}' not found (looked for "
                                 f"{path})")
    return path


def load_deepspeed_config(recipe) -> dict | None:
    """The DeepSpeed config as a dict (the file read when the entry is a path)."""
    config = deepspeed_config(recipe)
    if isinstance(config, str):
        with open(config, encoding="utf-8") as f:
            return json.load(f)
    return config


def launch_arguments(recipe, cuda: bool) -> dict:
    """TrainingArguments settings the launch needs: the DeepSpeed config, and for several
    processes on CPU, ``use_cpu`` (without it accelerate sees no distributed setup on CPU and
    every process trains a whole copy on its own) with the gloo backend."""
    training = recipe.data.get("training") or {}
    settings = {}
    config = deepspeed_config(recipe)
    if config is not None:
        settings["deepspeed"] = config
        if not cuda:
            settings["accelerator_config"] = {**(training.get("accelerator_config") or {}),
                                              "use_configured_state": True}
            deepspeed_cpu_state(training)
    elif world_size() > 1 and not cuda:
        settings["use_cpu"] = True
        settings["ddp_backend"] = training.get("ddp_backend") or "gloo"
    return settings


def fix_loss_scaling(model, mean_loss: bool = True) -> bool:
    """Keep the Trainer from rescaling a head's mean loss as if it were normalised by
    ``num_items_in_batch``. transformers takes any model whose ``forward`` has ``**kwargs`` for
    one that divides its loss by the items of the whole batch: it then skips the division by
    ``gradient_accumulation_steps`` and, across processes, multiplies the loss by the number of
    processes. The classification, token-classification, masked-LM and seq2seq heads of most
    encoders compute a plain mean (``nn.CrossEntropyLoss``), so their loss and gradients came out
    N times too large under DDP/DeepSpeed (and per accumulation step). ``accepts_loss_kwargs =
    False`` on the model (the Trainer's own switch) restores the mean-loss handling; a plain
    mean is right for every head. Tasks whose loss does honour ``num_items_in_batch`` (causal
    LMs: ``Task.mean_loss`` is False) and models that declare the attribute themselves are left
    alone. Returns whether it was set."""
    if not mean_loss:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "accepts_loss_kwargs" in vars(type(base)) or "accepts_loss_kwargs" in vars(base):
        return False
    base.accepts_loss_kwargs = False
    return True


def deepspeed_cpu_state(training: dict):
    """accelerate's process state for DeepSpeed without a GPU, made before TrainingArguments
    (which then takes it: ``accelerator_config.use_configured_state``). Left to itself,
    TrainingArguments asks accelerate for a DeepSpeed state without a backend; on CPU accelerate
    then counts one process whatever the world size: the ``"auto"`` batch sizes come out wrong
    (DeepSpeed refuses them) and every process would read the whole dataset. Here the backend
    is named (``training.ddp_backend``, else gloo) and the state counts every process."""
    import datetime

    from accelerate import PartialState

    previous = os.environ.get("ACCELERATE_USE_DEEPSPEED")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        return PartialState(backend=training.get("ddp_backend") or "gloo",
                            timeout=datetime.timedelta(
                                seconds=int(training.get("ddp_timeout") or 1800)))
    finally:
        if previous is None:
            del os.environ["ACCELERATE_USE_DEEPSPEED"]
        else:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = previous


# --------------------------------------------------------------------------------------------
# DeepSpeed in one plain process


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_environment(log=print) -> dict:
    """Set the launcher variables a plain ``fturun RECIPE`` run lacks (``RANK=0``,
    ``WORLD_SIZE=1``, ``LOCAL_RANK=0``, ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT`` a free port),
    so DeepSpeed starts a one-process group instead of looking for MPI. Variables already set
    are kept; under torchrun/accelerate/deepspeed nothing changes. Returns what was set.

    Started by ``mpirun`` (its world size is in ``OMPI_COMM_WORLD_SIZE``/``PMI_SIZE``) without
    the launcher variables, it refuses: each process would train alone."""
    if "WORLD_SIZE" in os.environ:
        return {}
    for mpi in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"):
        if int_env(mpi, 1) > 1:
            raise RecipeRuntimeError(
                f"DeepSpeed under mpirun ({mpi}={os.environ[mpi]}) without RANK/WORLD_SIZE: "
                "launch with torchrun instead: torchrun --nproc_per_node N -m fturun RECIPE")
    wanted = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    log("deepspeed: one process (RANK=0, WORLD_SIZE=1, MASTER_PORT="
        f"{os.environ['MASTER_PORT']}); for several: torchrun --nproc_per_node N -m fturun "
        "RECIPE, or fturun launch --nproc N RECIPE")
    return added


# --------------------------------------------------------------------------------------------
# what the run really used


def describe_engine(trainer) -> dict:
    """How the Trainer really runs, read from the objects it built (after training started):
    processes, distributed type and backend, device, precision, and for DeepSpeed the engine
    and optimizer classes and the ZeRO stage."""
    import torch.distributed as dist

    args = trainer.args
    state = getattr(trainer.accelerator, "state", None)
    info = {
        "world_size": args.world_size,
        "parallel_mode": getattr(args.parallel_mode, "value", str(args.parallel_mode)),
        "distributed_type": str(getattr(state, "distributed_type", "NO")).split(".")[-1],
        "backend": dist.get_backend() if dist.is_available() and dist.is_initialized()
        else None,
        "device": str(args.device),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "model_wrapper": type(trainer.model_wrapped).__name__,
        "deepspeed": None,
        "fsdp": None,
    }
    if getattr(trainer, "is_fsdp_enabled", False):
        info["fsdp"] = describe_fsdp(args, getattr(state, "fsdp_plugin", None))
    engine = getattr(trainer, "deepspeed", None)
    if trainer.is_deepspeed_enabled and engine is not None:
        offload = None
        try:
            zero = engine.zero_optimization() and engine._config.zero_config
            device = getattr(getattr(zero, "offload_optimizer", None), "device", None)
            offload = str(getattr(device, "value", device)) if device else None
        except Exception:  # noqa: BLE001 - informative only
            pass
        info["deepspeed"] = {
            "engine": type(engine).__name__,
            "zero_stage": int(engine.zero_optimization_stage()),
            "optimizer": type(engine.optimizer).__name__,
            "offload_optimizer": offload,
        }
    return info


def _name(value) -> str | None:
    """An enum's member name (``StateDictType.FULL_STATE_DICT`` -> ``FULL_STATE_DICT``)."""
    if value is None:
        return None
    return str(getattr(value, "name", value)).split(".")[-1].upper()


def describe_fsdp(args, plugin=None) -> dict:
    """FSDP as it runs: version, sharding strategy, state-dict type and CPU offload, read from
    accelerate's plugin when there is one, else from what TrainingArguments hands it
    (``args.fsdp_plugin_args``). FSDP2's ``reshard_after_forward`` true/false is named as the
    strategy it stands for (``FULL_SHARD`` / ``SHARD_GRAD_OP``)."""
    given = dict(getattr(args, "fsdp_plugin_args", None) or {})

    def read(key, default=None):
        value = getattr(plugin, key, None) if plugin is not None else None
        return value if value is not None else given.get(key, default)

    version = int(read("fsdp_version", 2))
    reshard = read("reshard_after_forward", True)
    if isinstance(reshard, bool):
        strategy = "FULL_SHARD" if reshard else "SHARD_GRAD_OP"
    else:
        strategy = _name(read("sharding_strategy") if version == 1 and plugin is not None
                         else reshard)
    offload = read("cpu_offload", False)
    return {"version": version, "sharding_strategy": strategy,
            "state_dict_type": _name(read("state_dict_type", "FULL_STATE_DICT")),
            "cpu_offload": bool(getattr(offload, "offload_params", offload))}


ENGINE_FILE = "engine.json"


def EngineReport(output_dir: str, tracker=None):  # noqa: N802 - used like a class
    """A callback that, once training has started, records on rank 0 how the run really runs
    (:func:`describe_engine`): printed, written to ``OUTPUT_DIR/engine.json`` and set as
    ``fturun.engine.*`` tags of the MLflow run; with the speed defaults of the build
    (``.defaults``: :class:`fturun.engine.speed_defaults.Choice` s), each printed as ``chosen: ...
    because
    ...``, listed in ``engine.json`` and set as a ``fturun.default.<key>`` tag (the values fturun
    chose also as ``default.<key>`` params). Set ``.trainer`` before training."""
    from transformers import TrainerCallback

    class EngineReport(TrainerCallback):
        trainer = None
        info = None
        defaults = ()
        plan = None  # the plan.* record (fturun.plan), kept in engine.json

        def on_train_begin(self, args, state, control, **kwargs):
            if self.trainer is None or not state.is_world_process_zero:
                return
            self.info = info = describe_engine(self.trainer)
            info["defaults"] = [choice.record() for choice in self.defaults]
            if self.plan:
                info["plan"] = self.plan
            text = f"engine: {info['world_size']} process{'es' if info['world_size'] > 1 else ''}"
            text += f" ({info['distributed_type']}"
            text += f", {info['backend']})" if info["backend"] else ")"
            text += f" on {info['device']}, {info['precision']}"
            ds = info["deepspeed"]
            if ds:
                text += (f"; DeepSpeed {ds['engine']} ZeRO stage {ds['zero_stage']}, optimizer "
                         f"{ds['optimizer']}")
                if ds["offload_optimizer"] and ds["offload_optimizer"] != "none":
                    text += f" offloaded to {ds['offload_optimizer']}"
            if info["fsdp"]:
                text += (f"; FSDP{info['fsdp']['version']} {info['fsdp']['sharding_strategy']}, "
                         f"{info['fsdp']['state_dict_type']}")
            print("\n  ".join([text] + [c.line() for c in self.defaults]), flush=True)
            write_json(os.path.join(output_dir, ENGINE_FILE), info)
            if tracker is not None:
                tags = {"fturun.engine.world_size": str(info["world_size"]),
                        "fturun.engine.distributed_type": info["distributed_type"]}
                if ds:
                    tags["fturun.engine.deepspeed_zero_stage"] = str(ds["zero_stage"])
                if info["fsdp"]:
                    tags["fturun.engine.fsdp_version"] = str(info["fsdp"]["version"])
                # short values that read whole in the UI's tag list; the reasons are in
                # engine.json and on the console
                tags.update({f"fturun.default.{c.key}": c.tag() for c in self.defaults})
                tracker.set_tags(tags)
                tracker.log_params({f"default.{c.key}": c.value for c in self.defaults
                                    if c.source == "fturun"})

    return EngineReport()
