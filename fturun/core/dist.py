"""Where this process stands in a launch, and how processes agree: the one "main process"
(rank 0: it tracks, saves and writes outputs), the process group, a barrier, "main process
first", and the stop vote. Outside a launcher there is one process and every function here is
trivial."""

from __future__ import annotations

import os
from contextlib import contextmanager

#: what torchrun (and accelerate launch, and the deepspeed launcher) set for every process
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def world_size(environ=None) -> int:
    """Processes in this run (``$WORLD_SIZE`` of ``environ``, default ``os.environ``; 1
    outside a launcher)."""
    return int_env("WORLD_SIZE", 1, environ)


def rank() -> int:
    """This process's global rank (``$RANK``; 0 outside a launcher)."""
    return int_env("RANK", int_env("LOCAL_RANK", 0))


def local_rank() -> int:
    """This process's rank on its node (``$LOCAL_RANK``; 0 outside a launcher)."""
    return int_env("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """Rank 0: the process that tracks, saves and writes outputs."""
    return rank() == 0


def int_env(name: str, default: int, environ=None) -> int:
    """``$name`` of ``environ`` (default ``os.environ``) as an int, else ``default``."""
    try:
        return int((os.environ if environ is None else environ).get(name, "") or default)
    except ValueError:
        return default


def quiet_off_main(fn=print):
    """``fn`` on rank 0, a function that does nothing on the other ranks (their messages would
    repeat rank 0's)."""
    return fn if is_main_process() else (lambda *args, **kwargs: None)


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
