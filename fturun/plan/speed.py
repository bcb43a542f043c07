"""Time: model FLOPs per token (forward and backward; a frozen weight needs no weight gradient,
so LoRA's backward is smaller; gradient checkpointing runs the layers' forward twice, not the
output head's), tokens per step from the data, divided by the device's peak and the expected
utilisation (the linear layers' GEMMs at one, attention's per-head products at its own); what
is not FLOPs at all: where attention runs the math path, its passes over the batch x heads x S
x S scores (memory-bound: mask, softmax, dropout's multiply) and, on a CPU, drawing every
dropout mask element (``bernoulli_``, 8-15 ns an element on this project's machine: a
third of a BERT step at 512 tokens); a causal LM's loss over the vocabulary at every token
(memory-bound); the optimizer's pass over the trainable parameters; steps, evaluations, wall
time and cost of the run.

FLOPs per token, N the linear weights' parameters, T the trainable ones among them, L layers,
d the attention width, S the sequence (bench/utilisation.py's counting): linear forward 2·N,
backward 2·N + 2·T; attention forward 4·L·d·S, backward 8·L·d·S."""

from __future__ import annotations

import math

from .memory import dropout_elements, math_attention

#: bytes the optimizer step reads and writes per trainable parameter (weight, gradient, two
#: states, read and written) and the memory bandwidth a step reaches, by device kind
STEP_TRAFFIC = 32
BANDWIDTH = {"cuda": 1.5e12, "cpu": 6e9}
#: seconds each micro-batch costs besides its FLOPs (loader, Python, kernel launches)
MICRO_BATCH_OVERHEAD = {"cuda": 0.012, "cpu": 0.004}
#: bytes a token's loss over the vocabulary moves per vocabulary entry (float32 logits,
#: log-softmax and their gradients, read and written), at the device's bandwidth
LOGIT_TRAFFIC = 80
#: bytes each float32 score element moves where attention runs the math path: the forward
#: writes the product, adds the mask, checks and softmaxes it (read and write each); the
#: backward writes the product's gradient and runs softmax's backward; attention dropout's
#: multiply reads two and writes one, each way (measured on 2 cores, 4 x 12 heads x 512 x 512:
#: 8.8 ns an element forward and 7.5 backward beside the products, 23 and 8.5 with dropout)
SCORE_TRAFFIC = {"forward": 32, "backward": 16, "dropout": 12}
#: seconds to draw one dropout mask element: CPU's bernoulli_ (measured 7.5-14.5 ns an element
#: on 2 cores, 8.4-13 inside MiniLM steps; F.dropout 8.6-17); CUDA draws inside its kernels
DROPOUT_SECONDS = {"cpu": 8e-9, "cuda": 4e-12}


def flops_per_token(census: dict, shape, seq: int, checkpointing: bool) -> dict:
    """``forward`` and ``train`` (forward + backward, + the recomputed forward under gradient
    checkpointing) FLOPs of one token, and ``attention_train``: the part of ``train`` in
    attention's per-head products."""
    attention = 4 * shape.layers * shape.heads * shape.head_dim * seq
    linear = 2 * census["matmul"]
    backward = 2 * census["matmul"] + 2 * census["trainable_matmul"]
    # checkpointing runs the layers' forward again, not the output head's
    again = linear - 2 * census.get("head_matmul", 0) if checkpointing else 0
    attention_train = attention * (4 if checkpointing else 3)
    return {"forward": linear + attention, "attention_forward": attention,
            "train": linear + again + backward + attention_train,
            "attention_train": attention_train}


def step_seconds(census: dict, shape, s, device, tokens_per_row: float) -> dict:
    """Seconds of one optimizer step per device: ``compute`` (FLOPs / (peak x utilisation),
    attention's products at their own utilisation; with ``scores``, the math path's passes over
    the scores, and ``dropout``, the masks drawn, both included), ``logits`` (a causal LM's
    loss over the vocabulary), ``optimizer`` (its pass over the trainable parameters, sharded
    by ZeRO), ``overhead``."""
    def seconds(total: float, attention: float) -> float:  # of a token's FLOPs
        return ((total - attention) / device.utilisation +
                attention / device.attention_utilisation) / device.peak_flops

    seq = int(math.ceil(tokens_per_row))
    cpu = device.kind == "cpu"
    flops = flops_per_token(census, shape, seq, s.checkpointing)
    tokens = s.batch * s.accumulation * tokens_per_row
    forwards = 2 if s.checkpointing else 1  # the layers' forward, again under checkpointing
    scores = shape.layers * shape.heads * seq if math_attention(shape, s, cpu) else 0
    extra = SCORE_TRAFFIC["dropout"] if shape.attn_dropout > 0 else 0
    score_bytes = scores * ((SCORE_TRAFFIC["forward"] + extra) * forwards +
                            SCORE_TRAFFIC["backward"] + extra)
    in_layers, outside = dropout_elements(census, shape, s, seq, cpu)
    scores_time = tokens * score_bytes / BANDWIDTH[device.kind]
    dropout = tokens * (in_layers * forwards + outside) * DROPOUT_SECONDS[device.kind]
    compute = tokens * seconds(flops["train"], flops["attention_train"]) + scores_time + dropout
    forward = seconds(flops["forward"], flops["attention_forward"])  # eval: fused, no dropout
    logits = tokens * shape.vocab * LOGIT_TRAFFIC / BANDWIDTH[device.kind] \
        if census.get("lm_head") else 0.0
    shard = s.devices if s.zero_stage >= 1 else 1
    kind = "cpu" if s.offload_optimizer else device.kind
    optimizer = census["trainable"] / shard * STEP_TRAFFIC / BANDWIDTH[kind]
    overhead = s.accumulation * MICRO_BATCH_OVERHEAD[device.kind]
    return {"compute": compute, "scores": scores_time, "dropout": dropout, "logits": logits,
            "optimizer": optimizer, "overhead": overhead,
            "total": compute + logits + optimizer + overhead, "tokens": tokens * s.devices,
            "flops_per_token": flops["train"], "forward_flops_per_token": flops["forward"],
            "forward_seconds_per_token": forward}


def run_steps(rows: int | None, training: dict, effective_batch: int) -> int | None:
    """Optimizer steps of the run: ``max_steps``, else epochs x batches of ``rows``."""
    max_steps = training.get("max_steps", -1)
    if max_steps and max_steps > 0:
        return int(max_steps)
    if not rows:
        return None
    per_epoch = max(math.ceil(rows / effective_batch), 1)
    return int(math.ceil(float(training.get("num_train_epochs", 3.0)) * per_epoch))


def evaluations(training: dict, steps: int) -> int:
    """How many times the run evaluates."""
    strategy = training.get("eval_strategy", "no")
    if strategy == "steps":
        every = training.get("eval_steps") or training.get("logging_steps", 500)
        if every < 1:
            every = max(int(every * steps), 1)
        return max(steps // int(every), 1)
    if strategy == "epoch":
        return max(int(math.ceil(float(training.get("num_train_epochs", 3.0)))), 1)
    return 0


def run_time(step: dict, steps: int | None, eval_rows: int | None, training: dict, s,
             tokens_per_row: float, price_per_hour: float | None) -> dict:
    """Training and evaluation seconds of the run, and its cost for ``s.devices`` devices."""
    if steps is None:
        return {}
    train = steps * step["total"]
    n_evals = evaluations(training, steps) if eval_rows else 0
    per_eval = (eval_rows or 0) * tokens_per_row * step["forward_seconds_per_token"] / s.devices
    result = {"steps": steps, "train_seconds": train, "evaluations": n_evals,
              "eval_seconds": n_evals * per_eval, "seconds": train + n_evals * per_eval}
    if price_per_hour:
        result["cost"] = result["seconds"] / 3600 * price_per_hour * s.devices
    return result
