"""``fturun launch``: validate the recipe once, then *exec* torchrun running ``fturun run`` in each
process (``--print`` shows the command instead)."""

from __future__ import annotations

import os
import sys

from ..errors import UsageError
from ..hardware import cuda_device_count
from .common import load_valid_recipe


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

    load_valid_recipe(args.recipe, args.overrides)  # exit 2 here, not N times
    gpus = cuda_device_count()
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
