"""Several processes, one recipe: fturun under ``torchrun`` / ``accelerate launch`` (DDP across GPUs
and nodes) and with DeepSpeed ZeRO.

fturun manages no processes itself. ``torchrun --nproc_per_node N -m fturun RECIPE`` (or
``accelerate launch -m fturun RECIPE``) starts N copies of the ordinary command; each copy:

- reads and validates the same recipe;
- prepares the data with the main process of its node first (:func:`main_process_first`): it
  fills the ``datasets`` cache, the others then read it;
- builds the same model and trains its shard of every batch (DDP; gloo on CPU, nccl on GPU);
- only rank 0 tracks the run in MLflow, saves the final model and writes the output files;
- stops with the others at the same step on Ctrl-C/SIGTERM (:class:`StopVote`).

Two Trainer pitfalls are handled here: on CPU, accelerate sees no distributed setup unless told
``use_cpu`` (each process would train a whole copy alone) or, for DeepSpeed, given a prepared
state (:func:`deepspeed_cpu_state`); and mean-loss heads are marked so the Trainer does not
multiply their loss by the number of processes (:func:`fix_loss_scaling`). What really ran is
recorded by :func:`EngineReport` in ``OUTPUT_DIR/engine.json``.

``fturun launch --nproc N RECIPE [KEY=VALUE ...]`` validates the recipe once, then *execs*
torchrun with that command line (``--print`` shows it instead).

A recipe with a ``deepspeed`` section run as a plain ``fturun RECIPE`` (one process, no launcher)
gets the single-rank environment a launcher would set (:func:`single_process_environment`):
DeepSpeed then starts in-process instead of reaching for ``mpi4py``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from contextlib import contextmanager

from .errors import RecipeRuntimeError, UsageError

#: what torchrun (and accelerate launch, and the deepspeed launcher) set for every process
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------------------------
# where this process stands


def world_size(environ=None) -> int:
    """Processes in this run (``$WORLD_SIZE`` of ``environ``, default ``os.environ``; 1
    outside a launcher)."""
    return _int_env("WORLD_SIZE", 1, environ)


def rank() -> int:
    """This process's global rank (``$RANK``; 0 outside a launcher)."""
    return _int_env("RANK", _int_env("LOCAL_RANK", 0))


def local_rank() -> int:
    """This process's rank on its node (``$LOCAL_RANK``; 0 outside a launcher)."""
    return _int_env("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """Rank 0: the process that tracks, saves and writes outputs."""
    return rank() == 0


def _int_env(name: str, default: int, environ=None) -> int:
    try:
        return int((os.environ if environ is None else environ).get(name, "") or default)
    except ValueError:
        return default


def quiet_off_main(fn=print):
    """``fn`` on rank 0, a function that does nothing on the other ranks (their messages would
    repeat rank 0's)."""
    return fn if is_main_process() else (lambda *args, **kwargs: None)


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
    from .context import resolve_path

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


def fix_loss_scaling(model, task: str) -> bool:
    """Keep the Trainer from rescaling a head's mean loss as if it were normalised by
    ``num_items_in_batch``. transformers takes any model whose ``forward`` has ``**kwargs`` for
    one that divides its loss by the items of the whole batch: it then skips the division by
    ``gradient_accumulation_steps`` and, across processes, multiplies the loss by the number of
    processes. The classification, token-classification, masked-LM and seq2seq heads of most
    encoders compute a plain mean (``nn.CrossEntropyLoss``), so their loss and gradients came out
    N times too large under DDP/DeepSpeed (and per accumulation step). ``accepts_loss_kwargs =
    False`` on the model (the Trainer's own switch) restores the mean-loss handling; a plain
    mean is right for every head. Causal LMs, whose loss does honour ``num_items_in_batch``,
    and models that declare the attribute themselves are left alone. Returns whether it was
    set."""
    if task == "causal-lm":
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
        if _int_env(mpi, 1) > 1:
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
# the process group and "main process first"


def init_process_group(training: dict, cuda: bool) -> bool:
    """Start the torch.distributed process group of a multi-process launch now (the Trainer and
    DeepSpeed reuse it): ``training.ddp_backend``, else nccl with CUDA and gloo without, with
    ``training.ddp_timeout``. Returns whether a group exists (False in one process)."""
    if world_size() <= 1:
        return False
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    backend = training.get("ddp_backend") or ("nccl" if cuda else "gloo")
    timeout = datetime.timedelta(seconds=int(training.get("ddp_timeout") or 1800))
    kwargs = {}
    if cuda and not training.get("use_cpu"):
        device = torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
        if backend == "nccl":
            kwargs["device_id"] = device
    dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    return True


def barrier() -> None:
    """Wait for every process (nothing in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextmanager
def main_process_first(training: dict | None = None, cuda: bool = False):
    """Run the body on each node's main process (local rank 0) first, then on the others: the
    first fills the ``datasets`` cache (tokenization is cached by fingerprint), the others read
    it. Nothing changes in one process. If the main process fails inside, torchrun stops the
    waiting ones."""
    if not init_process_group(training or {}, cuda):
        yield
        return
    first = local_rank() == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


class StopVote:
    """Whether any process asks to stop, agreed by all (one small all-reduce on a CPU tensor per
    call, over a gloo group of its own so a GPU stream is never waited on). A signal reaches the
    processes at slightly different moments: without the vote one would stop and save while the
    others went on into the next step's collectives and hung. In one process: the flag."""

    def __init__(self):
        self.group = None

    def any(self, flag: bool) -> bool:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return flag
        if self.group is None:  # every process makes it at its first call, the same step
            self.group = dist.group.WORLD if dist.get_backend() == "gloo" else \
                dist.new_group(backend="gloo")
        value = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.group)
        return bool(value.item())


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
    }
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


ENGINE_FILE = "engine.json"


def EngineReport(output_dir: str, tracker=None):  # noqa: N802 - used like a class
    """A callback that, once training has started, records on rank 0 how the run really runs
    (:func:`describe_engine`): printed, written to ``OUTPUT_DIR/engine.json`` and set as
    ``fturun.engine.*`` tags of the MLflow run. Set ``.trainer`` before training."""
    from transformers import TrainerCallback

    class EngineReport(TrainerCallback):
        trainer = None
        info = None

        def on_train_begin(self, args, state, control, **kwargs):
            if self.trainer is None or not state.is_world_process_zero:
                return
            self.info = info = describe_engine(self.trainer)
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
            print(text, flush=True)
            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, ENGINE_FILE), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=2)
                f.write("\n")
            if tracker is not None:
                tags = {"fturun.engine.world_size": str(info["world_size"]),
                        "fturun.engine.distributed_type": info["distributed_type"]}
                if ds:
                    tags["fturun.engine.deepspeed_zero_stage"] = str(ds["zero_stage"])
                tracker.set_tags(tags)

    return EngineReport()


# --------------------------------------------------------------------------------------------
# fturun launch


def add_arguments(parser) -> None:
    """The ``fturun launch`` options (the recipe and overrides are already there)."""
    parser.add_argument("--nproc", default=None, metavar="N",
                        help="processes on this node (default: the number of CUDA GPUs, "
                             "else 1)")
    parser.add_argument("--nnodes", type=int, default=1, metavar="N",
                        help="machines taking part (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, metavar="R",
                        help="this machine's rank, 0..nnodes-1 (multi-node)")
    parser.add_argument("--master-addr", default=None, metavar="HOST",
                        help="address of the node-rank-0 machine (multi-node)")
    parser.add_argument("--master-port", type=int, default=None, metavar="PORT",
                        help="a free port on that machine (default 29500)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                        help="resume from the latest checkpoint in the output dir, or from "
                             "CHECKPOINT")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the torchrun command instead of running it")


def torchrun_command(args, nproc: int) -> list:
    """The torchrun command line for ``fturun launch`` arguments."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    if args.nnodes > 1:
        if not args.master_addr:
            raise UsageError("--nnodes > 1 needs --master-addr (the node-rank-0 machine's "
                             "address, the same on every node)")
        if not 0 <= args.node_rank < args.nnodes:
            raise UsageError(f"--node-rank {args.node_rank}: must be 0..{args.nnodes - 1}")
        command += ["--nnodes", str(args.nnodes), "--node_rank", str(args.node_rank),
                    "--master_addr", args.master_addr,
                    "--master_port", str(args.master_port or 29500)]
    elif args.master_port or args.master_addr:
        command += ["--master_addr", args.master_addr or "127.0.0.1",
                    "--master_port", str(args.master_port or 29500)]
    else:
        command += ["--standalone"]  # a free port found by torchrun's rendezvous
    command += ["-m", "fturun", "run", str(args.recipe), *args.overrides]
    if args.resume:
        command += ["--resume"] if args.resume == "latest" else ["--resume", args.resume]
    return command


def cmd_launch(args) -> int:
    """Validate the recipe once, then exec torchrun running ``fturun run`` in each process."""
    import shlex

    from .cli import load_valid_recipe

    load_valid_recipe(args.recipe, args.overrides)  # exit 2 here, not N times
    gpus = _cuda_count()
    if args.nproc is None:
        nproc = max(gpus, 1)
    else:
        try:
            nproc = int(args.nproc)
        except ValueError:
            raise UsageError(f"--nproc {args.nproc}: a number of processes") from None
        if nproc < 1:
            raise UsageError("--nproc must be at least 1")
    if gpus and nproc > gpus:
        raise UsageError(f"--nproc {nproc}: this machine has {gpus} CUDA GPU"
                         f"{'s' if gpus != 1 else ''}; one process per GPU")
    command = torchrun_command(args, nproc)
    shown = shlex.join(command)
    if args.print_only:
        print(shown)
        return 0
    print(f"launching: {shown}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0
