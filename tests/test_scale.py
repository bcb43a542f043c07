"""Scaling out on CPU: a 2-process DDP run (torchrun, gloo) and DeepSpeed ZeRO-2 runs (2 processes
under torchrun, and one plain process) of a tiny recipe against the real MLflow server; the
hardware validation rules; ``fturun launch``.

The first DeepSpeed run on a machine JIT-compiles DeepSpeed's CPU communication op (about 1.5
minutes on 2 cores); torch caches it in ``~/.cache/torch_extensions`` (``$TORCH_EXTENSIONS_DIR``),
so later runs start in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import RECIPES, ROOT

from fturun.engine.hardware import Hardware, check_model, hardware_problems

LORA = RECIPES / "lora_cls.json"
ZERO2 = RECIPES / "ds_zero2_cls.json"
TINY = ["data.max_train_samples=32", "data.max_eval_samples=16", "data.max_length=32",
        "training.max_steps=4", "training.eval_strategy=steps", "training.eval_steps=2",
        "training.save_strategy=steps", "training.save_steps=2", "training.logging_steps=1"]
# one evaluation and one checkpoint, at the last of TINY's 4 steps: the runs that check neither a
# step-2 checkpoint nor a step-2 evaluation
AT_THE_END = ["training.eval_steps=4", "training.save_steps=4"]
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                    "MASTER_PORT", "GROUP_RANK", "ACCELERATE_USE_CPU", "ACCELERATE_USE_DEEPSPEED")


def _env():
    """This environment without a launcher's variables (as a user's shell)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(command, timeout):
    result = subprocess.run([str(c) for c in command], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-6000:])
    return result


def _torchrun(nproc, *fturun_args, timeout=600):
    return _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", nproc,
                 "--standalone", "-m", "fturun", "run", *fturun_args], timeout)


def _one_run(server, experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    assert runs[0].info.status == "FINISHED"
    return client, runs[0]


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# DDP


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_ddp_two_processes_give_one_mlflow_run_and_one_model(mlflow_server, tmp_path):
    out = tmp_path / "ddp"
    result = _torchrun(2, LORA, *TINY, *AT_THE_END, f"training.output_dir={out}",
                       f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=ddp")
    # really distributed: DDP over gloo, 2 processes (without use_cpu accelerate would have
    # run 2 independent single-process trainings)
    engine = _read(out / "engine.json")
    assert engine["world_size"] == 2 and engine["distributed_type"] == "MULTI_CPU"
    assert engine["backend"] == "gloo" and engine["model_wrapper"] == "DistributedDataParallel"
    # rank 0 alone reports, writes and tracks
    assert result.stdout.count("done in") == 1 and result.stdout.count("engine:") == 1
    assert result.stdout.count("data: train 32 rows") == 1
    client, run = _one_run(mlflow_server, "ddp")
    assert run.data.tags["fturun.engine.world_size"] == "2"
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == [1, 2, 3, 4]  # logged once per step, not once per rank
    # 32 rows / (16 per device x 2 processes) = 1 step per epoch: the data was sharded
    assert _read(out / "trainer_state.json")["log_history"][0]["epoch"] == 1
    # a mean loss (5 classes: ~ln 5 = 1.61), not multiplied by the number of processes
    assert 1.3 < loss[0].value < 1.9, loss[0].value
    assert (out / "model" / "adapter_model.safetensors").is_file()
    assert (out / "model" / "labels.json").is_file()
    assert "model" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert set(_read(out / "eval_results.json")) >= {"eval_loss", "eval_accuracy"}


# --------------------------------------------------------------------------------------------
# DeepSpeed


def _assert_zero2(out, processes):
    engine = _read(out / "engine.json")
    assert engine["distributed_type"] == "DEEPSPEED" and engine["world_size"] == processes
    assert engine["model_wrapper"] == "DeepSpeedEngine"
    assert engine["deepspeed"] == {"engine": "DeepSpeedEngine", "zero_stage": 2,
                                   "optimizer": "DeepSpeedZeroOptimizer",
                                   "offload_optimizer": None}
    # DeepSpeed's own checkpoint layout: one optimizer-state shard per process
    shards = sorted(p.name for p in (out / "checkpoint-4" / "global_step4").iterdir()
                    if p.name.endswith("optim_states.pt"))
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(processes)]
    assert (out / "model" / "adapter_model.safetensors").is_file()


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_deepspeed_zero2_under_torchrun(mlflow_server, tmp_path):
    out = tmp_path / "zero2"
    # `fturun launch` validates, then execs torchrun; no MLflow Model (nothing here looks at one)
    result = _run([sys.executable, "-m", "fturun", "launch", "--nproc", "2", ZERO2, *TINY,
                   *AT_THE_END, f"training.output_dir={out}",
                   f"tracking.tracking_uri={mlflow_server}", "tracking.experiment=zero2",
                   "tracking.log_model=false"], timeout=900)
    assert "launching: " in result.stdout and "torch.distributed.run" in result.stdout
    assert "DeepSpeed DeepSpeedEngine ZeRO stage 2" in result.stdout
    _assert_zero2(out, 2)
    client, run = _one_run(mlflow_server, "zero2")
    assert run.data.tags["fturun.engine.deepspeed_zero_stage"] == "2"
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == [1, 2, 3, 4]
    assert 1.3 < loss[0].value < 1.9, loss[0].value


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_deepspeed_in_one_plain_process_sets_up_its_environment_and_resumes(tmp_path):
    out = tmp_path / "zero2-single"
    result = _run([sys.executable, "-m", "fturun", ZERO2, *TINY, *AT_THE_END,
                   f"training.output_dir={out}", "tracking.enabled=false"], timeout=900)
    assert "deepspeed: one process (RANK=0, WORLD_SIZE=1" in result.stdout
    assert "mpi4py" not in result.stderr
    _assert_zero2(out, 1)
    resumed = _run([sys.executable, "-m", "fturun", ZERO2, *TINY, *AT_THE_END,
                    "training.max_steps=6", f"training.output_dir={out}",
                    "tracking.enabled=false", "--resume"], timeout=900)
    assert "resuming from" in resumed.stdout
    assert _read(out / "trainer_state.json")["global_step"] == 6


# --------------------------------------------------------------------------------------------
# hardware validation


CPU = Hardware(installed=lambda module: module in ("accelerate", "deepspeed"), environ={})
V100 = Hardware(cuda=True, gpus=2, gpu_name="Tesla V100-SXM2-16GB", capability=(7, 0),
                bf16=False, installed=lambda module: True, environ={})
A100 = Hardware(cuda=True, gpus=8, gpu_name="NVIDIA A100-SXM4-80GB", capability=(8, 0),
                bf16=True, installed=lambda module: True, environ={})


def _problems(hw, training=None, **sections):
    return hardware_problems({"training": training or {}, **sections}, hw)


@pytest.mark.parametrize("training,hw,expected", [
    ({"fp16": True}, CPU, "fp16 needs a CUDA GPU; remove training.fp16 or run on a GPU"),
    ({"fp16_full_eval": True}, CPU, "fp16_full_eval needs a CUDA GPU"),
    ({"bf16": True}, CPU, "bf16 needs a CUDA GPU; remove training.bf16 or run on a GPU"),
    ({"bf16": True}, V100, "bf16 needs a GPU with bfloat16 support (compute capability 8.0+: "
                           "Ampere or newer); Tesla V100-SXM2-16GB (compute capability 7.0) "
                           "has none: use training.fp16 instead"),
    ({"bf16": True, "fp16": True}, A100, "training.fp16 and training.bf16 are both set; keep one"),
    ({"tf32": True}, V100, "tf32 needs an NVIDIA GPU of compute capability 8.0+"),
    ({"tf32": True}, CPU, "tf32 needs an NVIDIA GPU of compute capability 8.0+ (Ampere or "
                          "newer); this machine has no CUDA GPU"),
    ({"optim": "adamw_bnb_8bit"}, CPU, "training.optim 'adamw_bnb_8bit' needs bitsandbytes: "
                                       "pip install bitsandbytes"),
    ({"optim": "ademamix"}, CPU, "training.optim 'ademamix' needs bitsandbytes"),
    ({"optim": "galore_adamw"}, CPU, "training.optim 'galore_adamw' needs the galore_torch "
                                     "package: pip install galore-torch"),
    ({"auto_find_batch_size": True}, CPU, "auto_find_batch_size retries after CUDA "
                                          "out-of-memory errors and this machine has no CUDA "
                                          "GPU"),
])
def test_hardware_rule_messages(training, hw, expected):
    problems = _problems(hw, training)
    assert any(expected in p for p in problems), problems


def test_8bit_optimizer_with_bitsandbytes_but_no_gpu():
    cpu_with_bnb = Hardware(installed=lambda module: True, environ={})
    assert _problems(cpu_with_bnb, optimizer="paged_adamw_8bit") == [
        "optimizer 'paged_adamw_8bit' runs on a CUDA GPU and none is present; use 'adamw_torch' "
        "or 'adafactor' on CPU"]


def test_what_the_hardware_supports_passes():
    assert _problems(A100, {"bf16": True, "tf32": True, "optim": "adamw_bnb_8bit",
                            "gradient_accumulation_steps": 4, "auto_find_batch_size": True,
                            "gradient_checkpointing": True}) == []
    assert _problems(V100, {"fp16": True, "optim": "paged_adamw_8bit"}) == []
    # memory savers that run anywhere: Adafactor, accumulation, checkpointing
    assert _problems(CPU, {"optim": "adafactor", "gradient_accumulation_steps": 8,
                           "gradient_checkpointing": True}) == []
    assert _problems(CPU, deepspeed={"zero_optimization": {"stage": 2}}) == []


def test_multi_process_rules():
    two = Hardware(installed=lambda module: True, environ={"WORLD_SIZE": "2"})
    assert "auto_find_batch_size with 2 processes" in _problems(
        Hardware(cuda=True, gpus=2, capability=(8, 0), bf16=True, installed=lambda m: True,
                 environ={"WORLD_SIZE": "2"}), {"auto_find_batch_size": True})[0]
    assert _problems(two, {"ddp_backend": "nccl"}) == [
        "training.ddp_backend 'nccl' needs CUDA GPUs; use 'gloo' on CPU (the default there)"]
    crowded = Hardware(cuda=True, gpus=2, capability=(8, 0), bf16=True,
                       installed=lambda m: True,
                       environ={"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"})
    assert _problems(crowded) == ["4 processes on this node but 2 CUDA GPUs: start one process "
                                  "per GPU (--nproc_per_node 2)"]


def test_deepspeed_rules():
    zero2 = {"zero_optimization": {"stage": 2}}
    no_ds = Hardware(installed=lambda module: module != "deepspeed", environ={})
    assert "needs DeepSpeed: pip install 'fturun[deepspeed]'" in _problems(
        no_ds, deepspeed=zero2)[0]
    assert "training.use_cpu drops DeepSpeed" in _problems(CPU, {"use_cpu": True},
                                                           deepspeed=zero2)[0]
    accelerate_cpu = Hardware(installed=lambda m: True, environ={"ACCELERATE_USE_CPU": "true"})
    assert "'accelerate launch --cpu' drops DeepSpeed" in _problems(accelerate_cpu,
                                                                    deepspeed=zero2)[0]
    offload = {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}
    assert _problems(CPU, deepspeed=offload) == []  # the Trainer's AdamW -> DeepSpeedCPUAdam
    assert "under ZeRO-Offload accelerate swaps the optimizer for DeepSpeed's CPU Adam" in \
        _problems(CPU, optimizer={"name": "torch_sgd", "params": {"momentum": 0.9}},
                  deepspeed=offload)[0]
    assert _problems(CPU, {"optim": "adafactor"}, deepspeed=offload)
    assert _problems(CPU, {"optim": "adamw_torch"}, deepspeed=offload) == []
    assert _problems(CPU, {"optim": "adafactor"},
                     deepspeed={**offload, "optimizer": {"type": "AdamW"}}) == []
    zero3 = {"zero_optimization": {"stage": 3}}
    assert any("auto_find_batch_size does not work with DeepSpeed ZeRO-3" in p
               for p in _problems(A100, {"auto_find_batch_size": True}, deepspeed=zero3))


def test_every_problem_at_once():
    problems = _problems(CPU, {"fp16": True, "bf16": True, "optim": "adamw_8bit",
                               "auto_find_batch_size": True})
    assert len(problems) == 5, problems


def test_gradient_checkpointing_needs_model_support():
    from fturun.core.errors import RecipeRuntimeError

    class NoCheckpointing:
        supports_gradient_checkpointing = False

    with pytest.raises(RecipeRuntimeError, match="NoCheckpointing does not support gradient "
                                                 "checkpointing; remove "
                                                 "training.gradient_checkpointing"):
        check_model(NoCheckpointing(), {"gradient_checkpointing": True})
    check_model(NoCheckpointing(), {})

    class Supported:
        supports_gradient_checkpointing = True

    check_model(Supported(), {"activation_checkpointing": True})


@pytest.mark.parametrize("override,message", [
    ("training.optim=adamw_bnb_8bit", "training.optim 'adamw_bnb_8bit' needs bitsandbytes"),
    ("optimizer=paged_adamw_8bit", "optimizer 'paged_adamw_8bit' needs bitsandbytes"),
    ("training.auto_find_batch_size=true", "auto_find_batch_size retries after CUDA "
                                           "out-of-memory errors"),
    ("training.bf16=true", "bf16 needs a CUDA GPU"),
])
def test_hardware_errors_at_run_start(cli, tmp_path, override, message):
    import importlib.util

    import torch

    if torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes"):
        pytest.skip("this machine has a GPU or bitsandbytes")
    code, out, err = cli(LORA, override, f"training.output_dir={tmp_path}",
                         "tracking.enabled=false")
    assert code == 1 and message in err, err
    assert "data:" not in out  # refused before any data was read
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# fturun launch and the loss scaling


def test_launch_prints_the_torchrun_command(cli):
    code, out, err = cli("launch", "--nproc", "2", LORA, "training.max_steps=2", "--print")
    assert code == 0, err
    assert f"-m torch.distributed.run --nproc_per_node 2 --standalone -m fturun run {LORA} " \
           "training.max_steps=2" in out
    code, out, err = cli("launch", "--nproc", "2", "--nnodes", "2", "--node-rank", "1",
                         "--master-addr", "10.0.0.1", LORA, "--resume", "--print")
    assert code == 0, err
    assert "--nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 29500 -m fturun " \
           f"run {LORA} --resume" in out


def test_launch_refuses_before_starting_processes(cli):
    code, _, err = cli("launch", "--nproc", "2", LORA, "training.learnin_rate=1", "--print")
    assert code == 2 and "did you mean 'learning_rate'" in err
    code, _, err = cli("launch", "--nproc", "2", "--nnodes", "2", LORA, "--print")
    assert code == 2 and "--nnodes > 1 needs --master-addr" in err
    code, _, err = cli("launch", "--nproc", "0", LORA, "--print")
    assert code == 2 and "--nproc must be at least 1" in err


@pytest.fixture
def no_exec(monkeypatch):
    """``fturun launch`` must refuse before it execs torchrun: an exec here fails the test."""
    def refuse(*args):
        raise AssertionError(f"launch started processes: {args}")

    monkeypatch.setattr(os, "execv", refuse)


def test_launch_makes_every_check_of_one_process_before_starting_any(cli, tmp_path, no_exec):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the hardware cases below are CPU ones")
    off = ["tracking.enabled=false"]

    def launch(*args):
        code, out, err = cli("launch", "--nproc", "2", *args, *off)
        assert "launching:" not in out and "Traceback" not in err
        return code, out, err

    code, _, err = launch(RECIPES / "search_cls.json", f"training.output_dir={tmp_path / 's'}")
    assert code == 2 and "a study runs each trial in one process" in err
    assert "fturun launch --no-search" in err
    code, _, err = launch(LORA, "training.bf16=true", f"training.output_dir={tmp_path / 'b'}")
    assert code == 2 and "bf16 needs a CUDA GPU" in err
    # the multi-process rules, with the launch's world size
    code, _, err = launch(LORA, "training.ddp_backend=nccl", f"training.output_dir={tmp_path}")
    assert code == 2 and "training.ddp_backend 'nccl' needs CUDA GPUs" in err
    code, _, err = launch(LORA, "training.push_to_hub=true", f"training.output_dir={tmp_path}")
    assert code == 2 and "training.push_to_hub: HF_HUB_OFFLINE is set" in err
    code, _, err = launch(LORA, f"training.output_dir={tmp_path / 'none'}", "--resume")
    assert code == 2 and "no checkpoint-N folder in" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "none").exists()


def test_launch_refuses_a_busy_or_used_folder_and_skips_a_finished_run(cli, tmp_path, no_exec):
    from fturun.run.checkpoints import COMPLETE_MARKER
    from fturun.run.lock import EXIT_LOCKED, FolderLock

    off = ["tracking.enabled=false", "training.max_steps=4"]
    busy = tmp_path / "busy"
    with FolderLock(str(busy)):
        code, out, err = cli("launch", "--nproc", "2", LORA, f"training.output_dir={busy}", *off)
    assert code == EXIT_LOCKED and f"{busy} is in use by a run: pid {os.getpid()}" in err
    done = tmp_path / "done"
    checkpoint = done / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (done / "model").mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps(
        {"global_step": 4, "max_steps": 4, "epoch": 2.0}))
    (checkpoint / COMPLETE_MARKER).write_text(json.dumps({"global_step": 4}))
    code, out, err = cli("launch", "--nproc", "2", LORA, f"training.output_dir={done}", *off)
    assert code == 2 and "holds the finished model of an earlier run" in err
    code, out, err = cli("launch", "--nproc", "2", LORA, f"training.output_dir={done}", *off,
                         "--resume")
    assert code == 0, err
    assert "the run finished at step 4; nothing to resume" in out and "launching:" not in out


def test_mean_loss_heads_are_not_rescaled(registry):
    from fturun.engine.distributed import fix_loss_scaling

    tasks = registry.tasks

    class Head:
        pass

    head = Head()
    assert fix_loss_scaling(head, tasks["sequence-classification"].mean_loss) is True
    assert head.accepts_loss_kwargs is False
    assert fix_loss_scaling(Head(), tasks["causal-lm"].mean_loss) is False

    class Declared:
        accepts_loss_kwargs = True

    assert fix_loss_scaling(Declared(), tasks["token-classification"].mean_loss) is False


@pytest.mark.subprocess  # starts its own process
@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(mlflow_server, tmp_path):
    import signal
    import time

    import psutil
    from mlflow.tracking import MlflowClient

    from fturun.run.checkpoints import checkpoint_is_complete

    out = tmp_path / "ddp-stop"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--standalone", "-m", "fturun", "run", LORA, *TINY, "training.max_steps=400",
               "training.eval_steps=200", "training.save_steps=200",
               f"training.output_dir={out}", f"tracking.tracking_uri={mlflow_server}",
               "tracking.experiment=ddp-stop"]
    process = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count('"loss"') >= 2):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    workers = [p for p in psutil.Process(process.pid).children(recursive=True)
               if p.environ().get("LOCAL_RANK") == "1"]
    assert len(workers) == 1
    workers[0].send_signal(signal.SIGTERM)  # rank 1 only: rank 0 learns it through the vote
    _, stderr = process.communicate(timeout=180)
    assert "a checkpoint was saved" in stderr
    saved = [p for p in out.glob("checkpoint-*") if checkpoint_is_complete(str(p))]
    assert len(saved) == 1, stderr[-3000:]
    step = int(saved[0].name.split("-")[1])
    assert 2 <= step < 400
    assert _read(saved[0] / "trainer_state.json")["global_step"] == step
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("ddp-stop").experiment_id])
    assert run.info.status == "KILLED"
