"""What a plan says: the lines printed by ``fturun plan``, ``fturun check`` and at a run's
start, and the flat record kept in ``engine.json`` and as MLflow params (``plan.*``)."""

from __future__ import annotations

from .memory import optimizer_states

MIB, GIB = 1024 ** 2, 1024 ** 3
PART_LABELS = [("weights", "weights"), ("gradients", "gradients"),
               ("optimizer", "optimizer states"), ("master_weights", "master weights"),
               ("activations", "activations"), ("logits", "logits (loss)"),
               ("autocast_copies", "autocast copies"), ("framework", "framework")]


def size(n: float) -> str:
    """Bytes, in MiB or GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def seconds_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def batch_text(s) -> str:
    return (f"{s.batch} per device x {s.accumulation} accumulation x {s.devices} "
            f"device{'s' if s.devices > 1 else ''} = {s.effective_batch}")


def _part_notes(plan) -> dict:
    s, planner = plan.settings, plan.planner
    _, _, optimizer = optimizer_states(s.optimizer)
    weights = f"{s.quant_bits}-bit linears, the rest float32" if s.quant_bits \
        else s.weight_dtype
    sharded = f", ZeRO-{s.zero_stage} over {s.devices}" if s.zero_stage else ""
    return {"weights": weights + (sharded if s.zero_stage >= 3 else ""),
            "optimizer": optimizer + (sharded if s.zero_stage else "")
            + (", offloaded to CPU" if s.offload_optimizer else ""),
            "gradients": sharded.lstrip(", ") if s.zero_stage >= 2 else "",
            "activations": f"{s.batch} x {planner.seq(s)} tokens, {s.attention}, gradient "
                           f"checkpointing {'on' if s.checkpointing else 'off'}",
            "autocast_copies": f"{s.autocast} copies of the float32 weights",
            "framework": "CUDA context and kernels" if planner.device.kind == "cuda"
            else "the Trainer's and loader's own"}


def plan_lines(plan, title: str = "plan") -> list:
    """The plan as console lines."""
    planner, s, fig = plan.planner, plan.settings, plan.figures
    device, census, memory, step = planner.device, planner.census, fig["memory"], fig["step"]
    share = 100 * census["trainable"] / max(census["total"], 1)
    lines = [f"{title}: {device.name}, {size(device.memory)} ({device.source}), "
             f"{s.devices} device{'s' if s.devices > 1 else ''}",
             f"  params:   {census['trainable']:,} trainable of {census['total']:,} ({share:.2f}%)"
             ", counted on the meta device (no weight read)",
             f"  batch:    {batch_text(s)}; {planner.seq(s)} tokens a row at most "
             f"({planner.data.source})",
             f"  memory:   {size(memory['peak'])} peak per device"]
    notes = _part_notes(plan)
    for key, label in PART_LABELS:
        if memory[key]:
            note = notes.get(key, "")
            lines.append(f"    {label:<17} {size(memory[key]):>11}" + (f"  {note}" if note
                                                                         else ""))
    lines.append(f"  time:     ~{seconds_text(step['total'])} a step ({step['tokens']:,.0f} "
                 f"tokens x {step['flops_per_token'] / 1e6:,.1f} MFLOP at "
                 f"{device.peak_flops / 1e9:,.0f} GFLOP/s x {device.utilisation:.0%} expected "
                 f"utilisation, attention's products x {device.attention_utilisation:.0%}"
                 f"{_unfused_text(step)})" + _run_text(plan.run))
    lines.append(verdict_line(plan))
    for found in plan.suggestions:
        lines.append(f"    - {found['change']}: {size(found['figures']['memory']['peak'])}, "
                     f"~{seconds_text(found['figures']['step']['total'])} a step")
    lines += [f"  note:     {note}" for note in plan.notes]
    return lines


def _unfused_text(step: dict) -> str:
    """What of the step is not FLOPs: the math path's passes over attention's scores and the
    dropout masks drawn (included in the step's time)."""
    parts = [f"{seconds_text(step[key])} {what}" for key, what in
             (("dropout", "drawing dropout masks"), ("scores", "on attention's scores (math path)"))
             if step.get(key, 0) >= 0.0005]
    return f"; of it {', '.join(parts)}" if parts else ""


def _run_text(run: dict) -> str:
    if not run:
        return "; run length unknown (no row count: set data.max_train_samples or max_steps)"
    text = f"; {run['steps']:,} steps: ~{seconds_text(run['train_seconds'])}"
    if run.get("evaluations"):
        text += (f" + {run['evaluations']} evaluation(s) ~"
                 f"{seconds_text(run['eval_seconds'])}")
    if "cost" in run:
        text += f", ~{run['cost']:.4g} at the given price"
    return text


def verdict_line(plan) -> str:
    memory, device = plan.figures["memory"]["peak"], plan.planner.device.memory
    if plan.fits:
        return f"  verdict:  fits: {size(memory)} of {size(device)}"
    text = f"  verdict:  does NOT fit: {size(memory)} of {size(device)}"
    if not plan.suggestions:
        return text + "; no single change found makes it fit (a larger device, or fewer tokens)"
    return text + "; each of these fits, keeping the effective batch:"


def plan_record(plan) -> dict:
    """The flat ``plan.*`` record: engine.json and MLflow params."""
    census, s, fig = plan.planner.census, plan.settings, plan.figures
    record = {"plan.params_total": census["total"],
              "plan.params_trainable": census["trainable"],
              "plan.device": plan.planner.device.name,
              "plan.device_memory_bytes": plan.planner.device.memory,
              "plan.devices": s.devices, "plan.per_device_train_batch_size": s.batch,
              "plan.gradient_accumulation_steps": s.accumulation,
              "plan.seq_len": plan.planner.seq(s), "plan.fits": plan.fits,
              "plan.step_seconds": round(fig["step"]["total"], 4),
              "plan.utilisation": plan.planner.device.utilisation,
              "plan.peak_flops": round(plan.planner.device.peak_flops)}
    record.update({f"plan.memory.{k}_bytes": int(v) for k, v in fig["memory"].items()})
    if plan.run:
        record["plan.run_seconds"] = round(plan.run["seconds"], 1)
        record["plan.steps"] = plan.run["steps"]
        if "cost" in plan.run:
            record["plan.cost"] = round(plan.run["cost"], 6)
    return record
