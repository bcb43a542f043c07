"""The device a plan is made for: this machine's GPU, a named GPU (``--gpu``), a memory size
(``--memory``), or this machine's CPU; its memory, its dense matmul peak and the utilisation
fturun expects a training step to reach on it (calibrated: README "Planning")."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from .model_config import PlanError

GIB = 1024 ** 3
#: name -> (memory GiB, dense bf16/fp16 TFLOP/s, fp32 TFLOP/s, bf16); vendor data sheets
GPUS = {
    "h200": (141, 989, 67, True), "h100": (80, 989, 67, True), "h100-pcie": (80, 756, 51, True),
    "a100-80gb": (80, 312, 19.5, True), "a100-40gb": (40, 312, 19.5, True),
    "l40s": (48, 362, 91.6, True), "a6000": (48, 155, 38.7, True), "a10g": (24, 70, 35, True),
    "l4": (24, 121, 30, True), "rtx4090": (24, 165, 82.6, True), "rtx3090": (24, 71, 35.6, True),
    "v100-32gb": (32, 125, 15.7, False), "v100": (16, 125, 15.7, False),
    "t4": (16, 65, 8.1, False),
}
#: a training step's expected share of the matmul peak (model FLOPs utilisation), by device
#: kind: calibrated with bench/plan_accuracy.py (CPU) and the published MFU of HF Trainer runs
UTILISATION = {"cuda": 0.40, "cpu": 0.85}
#: the share attention's per-head products reach (batched small GEMMs; in a fused kernel with
#: its softmax): on CPU PyTorch's SDPA reached 54-86 GFLOP/s beside a 123 GFLOP/s GEMM (2
#: cores; heads of 32 and 64, 128 to 512 tokens); on CUDA taken as the linear layers' (fused
#: SDPA kernels; not calibrated here). The math path's passes over the scores and the dropout
#: draws are not FLOPs: :mod:`.speed` counts them apart
ATTENTION_UTILISATION = {"cuda": 0.40, "cpu": 0.50}
#: memory the framework holds besides the tensors: CUDA context and kernels (counted against
#: the device's memory, not in max_memory_allocated); on CPU the Trainer's and loader's growth
FRAMEWORK_BYTES = {"cuda": int(0.9 * GIB), "cpu": int(0.12 * GIB)}
#: how long a CPU probe is trusted before the next plan probes again (keeping the higher)
PROBE_SECONDS = 6 * 3600
#: a CPU probe is kept only when the machine was quiet: its 1-minute load at most this share
#: of the cores (a probe on a busy machine reads low, and every plan after it reads slow)
QUIET_LOAD = 0.75


@dataclass
class Device:
    """A plan's target: ``kind`` ``"cuda"`` or ``"cpu"``, memory in bytes, peak FLOP/s in the
    training dtype, whether it has bfloat16, and how the figures were found."""

    kind: str
    name: str
    memory: int
    peak_flops: float
    bf16: bool
    source: str
    utilisation: float = 0.0
    attention_utilisation: float = 0.0

    def __post_init__(self):
        self.utilisation = self.utilisation or UTILISATION[self.kind]
        self.attention_utilisation = self.attention_utilisation or \
            ATTENTION_UTILISATION[self.kind]


def target_device(gpu: str | None = None, memory_gb: float | None = None,
                  half: bool = True) -> Device:
    """The device to plan for: ``gpu`` by name (see :data:`GPUS`), ``memory_gb`` for a GPU of
    that size (an H100's speed), else this machine's GPU, else its CPU."""
    if memory_gb is not None and (not isinstance(memory_gb, (int, float)) or memory_gb <= 0):
        raise PlanError(f"--memory {memory_gb:g}: give the device's memory in GB, a number above "
                        "0 (e.g. --memory 24)")
    if gpu is not None:
        key = gpu.lower().replace(" ", "").replace("nvidia", "").strip("-")
        if key not in GPUS:
            from ..core.suggest import suggest

            raise PlanError(f"--gpu {gpu}: not a GPU the planner knows{suggest(key, GPUS)}; "
                            f"known: {', '.join(GPUS)} (or give --memory GB)")
        gib, half_tflops, fp32_tflops, bf16 = GPUS[key]
        memory = int((memory_gb or gib) * GIB)
        peak = (half_tflops if half else fp32_tflops) * 1e12
        return Device("cuda", key, memory, peak, bf16, f"--gpu {gpu}")
    if memory_gb is not None:
        gib, half_tflops, fp32_tflops, bf16 = GPUS["h100"]
        return Device("cuda", f"{memory_gb:g} GB GPU", int(memory_gb * GIB),
                      (half_tflops if half else fp32_tflops) * 1e12, True,
                      f"--memory {memory_gb:g} (an H100's speed)")
    return local_device(half)


def local_device(half: bool = True) -> Device:
    """This machine: its first CUDA GPU when there is one (torch asked only then), else its
    CPU (memory: physical RAM; peak: a short GEMM probe, kept per host in the plan cache)."""
    if os.path.exists("/dev/nvidia0") or os.environ.get("CUDA_VISIBLE_DEVICES", "") not in \
            ("", "-1"):
        from ..engine.hardware import Hardware, cuda_available

        if cuda_available():
            import torch

            hw = Hardware.detect()
            memory = torch.cuda.get_device_properties(0).total_memory
            name = hw.gpu_name.lower().replace("nvidia", "").replace(" ", "")
            known = next((GPUS[k] for k in sorted(GPUS, key=len, reverse=True) if k in name),
                         GPUS["h100"])
            return Device("cuda", hw.gpu_name, memory, (known[1] if half else known[2]) * 1e12,
                          hw.bf16, "this machine's GPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    flops, note = cpu_peak_flops()
    return Device("cpu", f"CPU ({os.cpu_count()} cores)", memory, flops, False,
                  "this machine's CPU" + note)


def cpu_peak_flops(load: float | None = None) -> tuple[float, str]:
    """float32 GEMM FLOP/s of this CPU (a 0.3 s probe with the threads torch uses), and a note
    for the plan's device line when the figure may read low.

    A probe is kept per host and core count only when the machine was quiet (1-minute load
    at most :data:`QUIET_LOAD` of the cores; ``load`` replaces :func:`os.getloadavg` in tests),
    and trusted for :data:`PROBE_SECONDS`, then probed again, keeping the higher. On a busy
    machine the kept quiet probe is used; with none kept, this busy probe serves this plan
    only, and the note says so."""
    from .census import cache_dir

    file = os.path.join(cache_dir(), f"cpu-{os.uname().nodename}-{os.cpu_count()}.json")
    kept = 0.0
    try:
        with open(file, encoding="utf-8") as handle:
            record = json.load(handle)
        kept = float(record["flops"])
        if time.time() - float(record.get("probed", 0)) < PROBE_SECONDS:
            return kept, ""
    except (OSError, ValueError, KeyError, TypeError):
        pass
    load = os.getloadavg()[0] if load is None else load
    cores = os.cpu_count() or 1
    if load > QUIET_LOAD * cores:
        if kept:
            return kept, ""
        return _gemm_flops(), (f" (its speed probed at load {load:.1f} on {cores} cores, "
                               "not kept: times may read high; plan again on a quiet machine)")
    flops = max(_gemm_flops(), kept)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        with open(file, "w", encoding="utf-8") as handle:
            json.dump({"flops": flops, "probed": time.time(), "load": load}, handle)
    except OSError:
        pass
    return flops, ""


def _gemm_flops() -> float:
    import torch

    n = 1024  # smaller GEMMs do not reach the peak on a few cores
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        a @ b
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - start)
