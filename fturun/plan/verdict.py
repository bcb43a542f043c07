"""Whether a configuration fits the device, the changes that make one fit (each keeping the
effective batch size, each with its new figures), and the largest per-device batch that fits
(``training.per_device_train_batch_size: "auto"``)."""

from __future__ import annotations

#: the share of the device's memory the "auto" batch leaves free (allocator fragmentation,
#: longer rows than planned)
AUTO_MARGIN = 0.10
QLORA_ADAPTER = {"name": "lora", "params": {"r": 16, "lora_alpha": 32,
                                            "target_modules": "all-linear"}}


def fits(figures: dict, memory: int, margin: float = 0.0) -> bool:
    """Whether the peak fits ``memory`` bytes with ``margin`` of it left free."""
    return figures["memory"]["peak"] <= memory * (1 - margin)


def divisors_down(n: int) -> list:
    """The divisors of ``n``, largest first."""
    return [d for d in range(n, 0, -1) if n % d == 0]


def smaller_batch(planner, s, margin: float = 0.0):
    """The largest rows per device that fit, with accumulation raised to keep the effective
    batch (a divisor of the rows per device and step, so it is kept exactly); None when even
    one row does not fit."""
    per_device = s.batch * s.accumulation
    for batch in divisors_down(per_device):
        candidate = s.but(batch=batch, accumulation=per_device // batch)
        if fits(planner.figures(candidate), planner.device.memory, margin):
            return candidate
    return None


def candidate_changes(planner, s) -> list:
    """``(what, settings)`` of each change to try, alone."""
    changes = []
    if not s.checkpointing:
        changes.append(("training.gradient_checkpointing=true", s.but(checkpointing=True)))
    if planner.device.kind == "cuda" and "8bit" not in s.optimizer and \
            not planner.census.get("adapter"):
        changes.append(("training.optim=adamw_8bit", s.but(optimizer="adamw_8bit")))
    if planner.device.kind == "cuda" and not s.quant_bits:
        changes.append(("QLoRA: model.params.quantization={\"bits\": 4} with a LoRA r=16 "
                        "all-linear adapter", s.but(quant_bits=4, weight_dtype="bfloat16",
                                                    autocast=None)))
    if s.devices > 1 and s.zero_stage < 3:
        changes.append(("DeepSpeed ZeRO-3 (recipes/deepspeed)",
                        s.but(zero_stage=3, deepspeed=True)))
    if s.zero_stage >= 1 and not s.offload_optimizer:
        changes.append(("ZeRO offload_optimizer to CPU", s.but(offload_optimizer=True)))
    for n in (2, 4, 8):
        if n > s.devices and (s.batch * s.accumulation * s.devices) % n == 0:
            per_device = s.batch * s.accumulation * s.devices // n
            batch = min(s.batch, per_device)
            while per_device % batch:
                batch -= 1
            changes.append((f"{n} devices with ZeRO-3 (fturun launch --nproc {n})",
                            s.but(devices=n, zero_stage=3, deepspeed=True, batch=batch,
                                  accumulation=per_device // batch)))
    return changes


def suggestions(planner, s) -> list:
    """The changes that make ``s`` fit, each ``{"change", "settings", "figures"}``, fastest
    first: fewer rows per device with more accumulation, then each other change alone (or with
    fewer rows per device when alone it does not fit)."""
    found = []
    smaller = smaller_batch(planner, s)
    if smaller is not None:
        found.append((f"per_device_train_batch_size={smaller.batch}, "
                      f"gradient_accumulation_steps={smaller.accumulation}", smaller))
    for what, changed in candidate_changes(planner, s):
        if fits(planner.figures(changed), planner.device.memory):
            found.append((what, changed))
            continue
        smaller = smaller_batch(planner, changed)
        if smaller is not None:
            found.append((f"{what}, per_device_train_batch_size={smaller.batch}, "
                          f"gradient_accumulation_steps={smaller.accumulation}", smaller))
    result = [{"change": what, "settings": changed, "figures": planner.figures(changed)}
              for what, changed in found]
    return sorted(result, key=lambda r: r["figures"]["step"]["total"])


def auto_batch(planner, s, effective: int) -> tuple:
    """``(rows per device, accumulation)`` for ``"auto"``: the largest rows per device whose
    plan fits with :data:`AUTO_MARGIN` free, accumulation making up ``effective`` (rows per
    device a divisor of ``effective / devices``, so the effective batch is exactly kept)."""
    per_device = max(effective // s.devices, 1)
    for batch in divisors_down(per_device):
        candidate = s.but(batch=batch, accumulation=per_device // batch)
        if fits(planner.figures(candidate), planner.device.memory, AUTO_MARGIN):
            return batch, per_device // batch
    return 1, per_device
