"""Memory per device, part by part, in bytes: weights, gradients, optimizer states, master
weights, activations (with the autocast weight copies and the logits), the framework's own, and
how ZeRO 1/2/3 (and offload) or FSDP shard each part over the devices.

The accounting follows the ZeRO paper (mixed-precision Adam: 2 + 2 + 12 bytes a parameter) and,
for activations, what autograd keeps for the backward pass, as Korthikanti et al. count it per
layer and token, for the operations a Hugging Face transformer layer runs: the layer norms'
inputs, the attention's q, k, v and output (SDPA) or its probabilities (eager), the MLP's
activation inputs (gated: gate, up and activation outputs), dropout masks, and the inputs of
every trainable linear (:mod:`.census` counts them on the meta model)."""

from __future__ import annotations

from .devices import FRAMEWORK_BYTES
from .settings import DTYPE_BYTES, is_8bit_optimizer

#: bytes a parameter of a 4-bit layer takes: the 4-bit value, its block's absmax (blocks of 64)
#: stored in 8 bits with double quantization (fp32 without), and the second-level constants
NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
INT8_BYTES = 1.0 + 4 / 4096  # LLM.int8: one byte, and a float32 scale per row
#: what lives at the backward's start per byte kept for it, calibrated with
#: bench/plan_accuracy.py: on CPU glibc keeps the forward's freed temporaries resident
TRANSIENT = {"cpu": 1.6, "cuda": 1.15}
#: glibc serves an allocation above its mmap threshold with mmap and returns it to the system
#: at free; the threshold rises with what is freed, up to 32 MiB on 64-bit
#: (DEFAULT_MMAP_THRESHOLD_MAX): a tensor larger than this never stays resident once freed
MMAP_THRESHOLD_MAX = 32 * 1024 ** 2


def optimizer_states(name: str) -> tuple:
    """``(states a trainable parameter keeps, bytes per state or None for the parameter's own
    dtype, what it is)``: AdamW 2 states, 8-bit optimizers 1 byte a state, Adafactor a factored
    second moment, SGD (no momentum) none; an optimizer the planner does not know is estimated
    as AdamW and said to be."""
    lowered = name.lower()
    if is_8bit_optimizer(lowered):
        return 2, 1, "8-bit (bitsandbytes)"
    if "adafactor" in lowered:
        return -1, 4, "Adafactor (factored)"
    if lowered in ("sgd",):
        return 0, None, "SGD"
    if any(key in lowered for key in ("lion", "adagrad", "rmsprop", "sgd")):
        return 1, None, name
    if "adam" in lowered:
        return 2, None, "AdamW"
    return 2, None, f"{name} (unknown: estimated as AdamW)"


def weight_bytes(census: dict, s) -> float:
    """All the weights, in the bytes they are stored in: 4/8-bit layers with their block
    constants and the rest in float32 (peft's k-bit preparation casts it); adapter weights in
    float32 (peft keeps them there); DeepSpeed mixed precision holds 16-bit weights."""
    total, trainable = census["total"], census["trainable"]
    if s.quant_bits:
        quantized = census["quantizable"]
        per = NF4_BYTES[True] if s.quant_bits == 4 else INT8_BYTES
        return quantized * per + (total - quantized) * 4
    width = DTYPE_BYTES[s.weight_dtype]
    if s.deepspeed and s.autocast:
        width = 2
    adapter = trainable if census.get("adapter") and width == 2 else 0
    return (total - adapter) * width + adapter * 4


def trainable_width(census: dict, s) -> int:
    """Bytes of a trainable parameter (and of its gradient)."""
    if s.quant_bits or census.get("adapter"):
        return 4 if not (s.deepspeed and s.autocast) else 2
    if s.deepspeed and s.autocast:
        return 2
    return DTYPE_BYTES[s.weight_dtype]


def static_parts(census: dict, s) -> dict:
    """weights, gradients, optimizer and master weights per device, sharded as ZeRO says."""
    n, trainable = s.devices, census["trainable"]
    width = trainable_width(census, s)
    states, state_bytes, _ = optimizer_states(s.optimizer)
    if states < 0:  # Adafactor: rows + columns of each matrix
        optimizer = census["adafactor"] * state_bytes
    else:
        state_bytes = state_bytes or (4 if s.deepspeed else width)
        optimizer = trainable * states * state_bytes
    master = trainable * 4 if s.deepspeed and s.autocast else 0
    weights = weight_bytes(census, s)
    gradients = trainable * width
    if s.zero_stage >= 1:
        optimizer, master = optimizer / n, master / n
    if s.zero_stage >= 2:
        gradients /= n
    if s.zero_stage >= 3:
        weights /= n
    if s.offload_optimizer:
        optimizer = master = 0
    if s.offload_params and s.zero_stage >= 3:
        weights = 0
    return {"weights": weights, "gradients": gradients, "optimizer": optimizer,
            "master_weights": master}


def activation_width(s) -> int:
    if s.autocast or s.quant_bits:
        return 2
    return DTYPE_BYTES[s.weight_dtype]


def math_attention(shape, s, cpu: bool) -> bool:
    """Whether attention runs the math path, writing the batch x heads x S x S scores out:
    eager, or SDPA on a CPU with attention dropout (PyTorch's fused CPU kernel takes none)."""
    return s.attention == "eager" or (cpu and shape.attn_dropout > 0 and s.attention == "sdpa")


def dropout_elements(census: dict, shape, s, seq: int, cpu: bool) -> tuple:
    """Dropout mask elements a training forward draws per token: ``(in the layers, outside)``
    — the layers' (hidden dropout after attention and MLP, attention dropout on the math path,
    an adapter's dropout) are drawn again when gradient checkpointing recomputes them; the
    embeddings' once."""
    hidden = shape.hidden if shape.hidden_dropout > 0 else 0
    attention = shape.heads * seq if shape.attn_dropout > 0 and math_attention(shape, s, cpu) \
        else 0
    return shape.layers * (2 * hidden + attention) + census["adapter_dropout"], hidden


def layer_bytes_per_token(shape, s, seq: int, cpu: bool) -> float:
    """Bytes one layer keeps per token for the backward pass, besides the trainable linears'
    inputs (see the module docstring). A dropout keeps its mask: one byte on CUDA, the float32
    noise it multiplied by on CPU; attention keeps its probabilities (twice with dropout) where
    it runs the math path: eager, or SDPA on CPU with attention dropout."""
    q_dim, kv_dim = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    elements = (3 if shape.gated else 2) * shape.hidden  # the norms (RMSNorm keeps more)
    masks = 2 * shape.hidden * mask_width(cpu) if shape.hidden_dropout > 0 else 0
    if math_attention(shape, s, cpu):  # q, k, v for its matmuls; the scores apart
        elements += q_dim + 2 * kv_dim
    else:
        elements += 2 * q_dim + 2 * kv_dim  # q, k, v and the output
    elements += 3 * shape.intermediate if shape.gated else shape.intermediate
    return elements * activation_width(s) + masks + score_bytes_per_token(shape, s, seq, cpu)


def mask_width(cpu: bool) -> int:
    """Bytes of a dropout mask element kept for the backward: the float32 noise it multiplied
    by on CPU, one byte on CUDA."""
    return 4 if cpu else 1


def score_bytes_per_token(shape, s, seq: int, cpu: bool) -> float:
    """The part of :func:`layer_bytes_per_token` in batch x heads x S x S tensors (the math
    path's probabilities, twice with dropout, and dropout's mask)."""
    if not math_attention(shape, s, cpu):
        return 0
    dropout = shape.attn_dropout > 0
    return shape.heads * seq * ((2 if dropout else 1) * activation_width(s) +
                                (mask_width(cpu) if dropout else 0))


def activation_parts(census: dict, shape, s, seq: int, cpu: bool = False) -> dict:
    """Activations of one micro-batch (``s.batch`` rows of ``seq`` tokens), the autocast weight
    copies and the logits, per device. The tensors kept for the backward pass are counted,
    times :data:`TRANSIENT`: what lives beside them at the backward's start (their gradients,
    the forward's freed temporaries the allocator keeps)."""
    a = activation_width(s)
    tokens = s.batch * seq
    per_layer = layer_bytes_per_token(shape, s, seq, cpu)
    inputs = census["saved_inputs"] * a + census["adapter_dropout"] * mask_width(cpu)
    if s.checkpointing:  # each layer's input; one layer recomputed, with its gradients
        kept = shape.layers * shape.hidden * a + 2 * per_layer + inputs / max(shape.layers, 1)
    else:
        kept = shape.layers * per_layer + inputs
    kept += 2 * shape.hidden * a  # embeddings' output and the last norm
    # on CPU, the freed temporaries stay resident only where they are smaller than glibc's
    # mmap threshold: the score tensors of a large batch x heads x S x S are returned at free
    score_tensor = s.batch * shape.heads * seq * seq * 4
    unmapped = score_bytes_per_token(shape, s, seq, cpu) * (2 if s.checkpointing else
                                                            shape.layers) \
        if cpu and score_tensor > MMAP_THRESHOLD_MAX else 0
    logits = 0
    if census.get("lm_head"):  # log-softmax kept in float32, its gradient at the backward
        logits = tokens * shape.vocab * (8 + (2 if a == 2 else 0))
    copies = census["matmul"] * 2 if s.autocast and s.weight_dtype == "float32" \
        and not s.deepspeed and not s.quant_bits else 0
    transient = TRANSIENT["cpu" if cpu else "cuda"]
    return {"activations": tokens * ((kept - unmapped) * transient + unmapped),
            "logits": logits,
            "autocast_copies": copies}


def memory_parts(census: dict, shape, s, seq: int, device_kind: str) -> dict:
    """Every part per device, in bytes, and ``peak``: the state, then the larger of the
    forward/backward's tensors and what the optimizer step holds, then the framework's. With
    one micro-batch a step (no DeepSpeed buffers), the gradients are made as the backward frees
    the activations (the Trainer sets them to None after each step), so they count with the
    step, not on top of the activations; but under gradient checkpointing the activations are
    the few layer inputs and the one layer recomputed at a time, beside which the gradients
    of the layers already done accumulate: there they add up."""
    parts = static_parts(census, s)
    parts.update(activation_parts(census, shape, s, seq, device_kind == "cpu"))
    step_temporaries = parts["optimizer"] / 2 if device_kind == "cuda" else 0
    parts["framework"] = FRAMEWORK_BYTES[device_kind]
    overlap = s.accumulation == 1 and not s.deepspeed
    state = parts["weights"] + parts["optimizer"] + parts["master_weights"] + \
        (0 if overlap else parts["gradients"])
    step = step_temporaries + (parts["gradients"] if overlap else 0)
    transient = parts["activations"] + parts["logits"] + parts["autocast_copies"]
    if s.checkpointing and overlap:  # the layers' gradients grow while each is recomputed
        transient += parts["gradients"]
    transient = max(transient, step)
    parts["peak"] = state + transient + parts["framework"]
    return parts
