"""What a run measures of what its plan predicted: peak memory per device (CUDA
``max_memory_allocated``; on CPU the process's peak resident memory grown over the loaded
model and data, its high-water mark reset when training starts) and step time; logged next to
the plan's figures as ``plan/*`` and ``measured/*`` metrics with the relative error."""

from __future__ import annotations


def _rss_field(name: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory to its current one (Linux: ``clear_refs``
    5); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def comparable_prediction(memory: dict, device_kind: str) -> float:
    """The plan's figure that the measurement reads: on CUDA the tensors' peak (the CUDA
    context is not allocated memory); on CPU the growth over the loaded model (no weights)."""
    if device_kind == "cuda":
        return memory["peak"] - memory["framework"]
    return memory["peak"] - memory["weights"]


def comparison(plan, peak_bytes: float | None, step_seconds: float | None) -> dict:
    """``plan/*``, ``measured/*`` and ``plan/*_error`` (predicted / measured - 1) metrics."""
    kind = plan.planner.device.kind
    predicted = comparable_prediction(plan.figures["memory"], kind)
    result = {"plan/peak_memory_bytes": float(predicted),
              "plan/step_seconds": round(plan.figures["step"]["total"], 4)}
    if peak_bytes:
        result["measured/peak_memory_bytes"] = float(peak_bytes)
        result["plan/peak_memory_error"] = round(predicted / peak_bytes - 1, 4)
    if step_seconds:
        result["measured/step_seconds"] = round(step_seconds, 4)
        result["plan/step_seconds_error"] = round(result["plan/step_seconds"] / step_seconds
                                                  - 1, 4)
    return result


def PeakMemory():  # noqa: N802 - used like a class
    """A callback measuring the training's peak memory on this process: ``peak()`` in bytes
    (CUDA: allocated; CPU: resident growth since training began), None before training."""
    from transformers import TrainerCallback

    class PeakMemory(TrainerCallback):
        def __init__(self):
            self.cuda = False
            self.base = None
            self.resettable = False

        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            self.cuda = args.device.type == "cuda" and torch.cuda.is_available()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(args.device)
                self.base = 0
                return
            self.base = _rss_field("VmRSS")
            self.resettable = reset_peak_rss()

        def peak(self) -> int | None:
            if self.base is None:
                return None
            if self.cuda:
                import torch

                return int(torch.cuda.max_memory_allocated())
            high = _rss_field("VmHWM") if self.resettable else None
            return max(high - self.base, 0) if high is not None else None

    return PeakMemory()
