"""``fturun launch``: validate the recipe and make every check a single process makes before it
loads anything (:func:`check_launch`), once, then *exec* torchrun running ``fturun run`` in each
process (``--print`` shows the command instead)."""

from __future__ import annotations

import os
import sys

from ..core.errors import UsageError
from ..engine.hardware import cuda_device_count
from .common import load_valid_recipe, whole_number


def add_arguments(parser) -> None:
    """The ``fturun launch`` options of its own (the recipe, overrides, ``--resume`` and
    ``--overwrite``, which each process's ``fturun run`` gets, are added as for ``run``)."""
    parser.add_argument("--nproc", default=None, metavar="N",
                        help="processes on this node (default: the number of CUDA GPUs, "
                             "else 1)")
    parser.add_argument("--nnodes", type=whole_number(1), default=1, metavar="N",
                        help="machines taking part (default 1)")
    parser.add_argument("--node-rank", type=whole_number(0), default=0, metavar="R",
                        help="this machine's rank, 0..nnodes-1 (multi-node)")
    parser.add_argument("--master-addr", default=None, metavar="HOST",
                        help="address of the node-rank-0 machine (multi-node)")
    parser.add_argument("--master-port", type=whole_number(1, 65535), default=None, metavar="PORT",
                        help="a free port on that machine (default 29500)")
    parser.add_argument("--no-search", action="store_true",
                        help="train a recipe with a 'search' section once, with its own values")
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
    command += [flag for flag, on in (("--overwrite", args.overwrite),
                                      ("--no-search", args.no_search)) if on]
    if args.resume:
        command += ["--resume"] if args.resume == "latest" else ["--resume", args.resume]
    return command


def check_launch(args, recipe, nproc: int) -> str | None:
    """Every check one process makes before it loads anything, made once here for the
    launch's world size, before any process starts: a search (refused under a launcher), the
    hardware rules, ``push_to_hub``, the tracking server, the output folder (another run's lock
    or outputs) and ``--resume``. Refusals exit 2 (the folder's lock: 75); returns why there is
    nothing to train (a finished run), else None."""
    from ..core.errors import RecipeRuntimeError
    from ..engine.distributed import load_deepspeed_config
    from ..engine.hardware import Hardware, check_hardware
    from ..engine.hub import check_push_to_hub
    from ..run.build import default_output_dir
    from ..run.checkpoints import check_run_start
    from ..run.lock import FolderLocked, folder_holder
    from ..run.preflight import check_model_settings
    from ..tracking import TrackingSettings, check_reachable

    data = recipe.data
    if data.get("search") and not args.no_search:
        raise UsageError("launch: this recipe has a 'search' section, and a study runs each "
                         "trial in one process: start several 'fturun search' workers on one "
                         "search.storage instead, or train it once in these processes with "
                         "'fturun launch --no-search'")
    output_dir = default_output_dir(recipe)
    try:
        hw = Hardware.detect()
        hw.environ = {**hw.environ, "WORLD_SIZE": str(nproc * args.nnodes),
                      "LOCAL_WORLD_SIZE": str(nproc)}
        check_hardware(data, hw, deepspeed_config=load_deepspeed_config(recipe),
                       file=recipe.path, locate=recipe.locate)
        check_push_to_hub(dict(data.get("training") or {}))
        check_model_settings(recipe)  # what each process would refuse before loading
        settings = TrackingSettings.from_recipe(recipe)
        if settings.enabled:
            check_reachable(settings.tracking_uri)
        holder = folder_holder(output_dir)
        if holder is not None:
            raise FolderLocked(f"{output_dir} is in use by {holder.describe()}. Wait for it to "
                               "end, or give this run another training.output_dir")
        return check_run_start(recipe, output_dir, args.resume, args.overwrite).nothing_to_do
    except (RecipeRuntimeError, OSError, ValueError) as exc:
        raise UsageError(f"launch: {exc}" if isinstance(exc, RecipeRuntimeError)
                         else f"launch: {type(exc).__name__}: {exc}") from None


def cmd_launch(args) -> int:
    """Validate the recipe once, then exec torchrun running ``fturun run`` in each process."""
    import shlex

    from ..core.errors import RecipeRuntimeError

    try:  # exit 2 here, not N times
        recipe, _ = load_valid_recipe(args.recipe, args.overrides)
    except RecipeRuntimeError as exc:  # the Hub checks: a refusal before any process starts
        raise UsageError(f"launch: {exc}") from None
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
    nothing_to_do = check_launch(args, recipe, nproc)
    if nothing_to_do:
        print(nothing_to_do)
        return 0
    print(f"launching: {shown}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached
