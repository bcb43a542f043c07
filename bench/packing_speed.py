"""Benchmark: causal-LM training with packing (data.packing: a batch's examples concatenated into
one row, no padding, no attention across examples) vs padding each example to the longest in its
batch, on the same short texts (chatterbot-corpus question -> answer pairs, the clm_chat recipe's
data and model): real (non-padding) tokens per second of training, and the fraction of padding
tokens each one computes on.

Both runs go through fturun's own build (recipes/clm_chat.json with overrides), the same seed and
so the same batches; a wrapper around the collator counts the tokens of every batch. Each mode
runs --repeats times, alternating, and its best time counts (the machine may be shared).

    python bench/packing_speed.py [--steps 40] [--batch 32] [--repeats 2]

With ``--recipe recipes/sft_chat.json`` the rows are whole conversations in messages form,
rendered with the ChatML template, and only the assistant turns are trained (completion-only
masks): the same comparison with masking, where the trained tokens (labels the loss uses) are
fewer than the real ones; both modes must train on exactly the same tokens.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RECIPE = os.path.join(ROOT, "recipes", "clm_chat.json")
IGNORE = -100


class CountingCollator:
    """Wraps a collator; counts real and computed tokens of every batch it makes."""

    def __init__(self, collator):
        self.collator = collator
        self.real = 0
        self.computed = 0
        self.trained = 0  # labels the shifted causal-LM loss uses

    def __call__(self, features):
        batch = self.collator(features)
        ids = batch["input_ids"]
        self.computed += ids.numel()
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.trained += int((batch["labels"][..., 1:] != IGNORE).sum())
        return batch


def train_once(packing: bool, steps: int, batch: int, output_dir: str,
               recipe_path: str = RECIPE) -> dict:
    from fturun.plugin.manager import default_plugins
    from fturun.recipe.load import load_recipe
    from fturun.run.build import build_run, make_trainer

    overrides = [f"data.packing={'true' if packing else 'false'}", f"training.max_steps={steps}",
                 f"training.per_device_train_batch_size={batch}", "training.eval_strategy=no",
                 "training.save_strategy=no", "training.logging_steps=1000",
                 "training.report_to=none", "tracking.enabled=false",
                 "training.disable_tqdm=true",
                 # the same batches in both modes (padding alone would group rows by length)
                 "training.train_sampling_strategy=random"]
    recipe = load_recipe(recipe_path, overrides)
    build = build_run(recipe, default_plugins().registry, output_dir)
    counter = CountingCollator(build.trainer_kwargs["data_collator"])
    build.trainer_kwargs["data_collator"] = counter
    build.trainer_kwargs["eval_dataset"] = None
    trainer = make_trainer(build)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "real": counter.real, "computed": counter.computed,
            "trained": counter.trained,
            "loss": result.metrics.get("train_loss"),
            "collator": type(build.trainer_kwargs["data_collator"].collator).__name__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", default=os.path.relpath(RECIPE, ROOT),
                        help="recipes/sft_chat.json: conversations, completion-only masks")
    args = parser.parse_args()
    recipe_path = os.path.join(ROOT, args.recipe)

    import io
    from contextlib import redirect_stdout

    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for packing in (True, False):
                with redirect_stdout(io.StringIO()):  # the build's own messages
                    run = train_once(packing, args.steps, args.batch,
                                     os.path.join(tmp, f"{packing}-{repeat}"), recipe_path)
                name = "packing" if packing else "padding"
                if name not in best or run["seconds"] < best[name]["seconds"]:
                    best[name] = run
    pack, pad = best["packing"], best["padding"]
    assert pack["real"] == pad["real"], "both modes must see the same tokens"
    assert pack["trained"] == pad["trained"], "both modes must train on the same tokens"
    rate = {name: r["real"] / r["seconds"] for name, r in best.items()}
    rows = "conversations (ChatML, completion-only masks)" if "sft" in args.recipe else \
        "question -> answer pairs"
    print(f"causal LM ({args.recipe}: GPT-2, 2 layers x 128, MiniLM vocabulary), "
          f"chatterbot-corpus {rows}, batch {args.batch} examples, {args.steps} steps, best of "
          f"{args.repeats}, {os.cpu_count()} CPU cores")
    for name, run in best.items():
        padding = 1 - run["real"] / run["computed"]
        print(f"  {name:8s} ({run['collator']}): {rate[name]:8.0f} real tokens/s, "
              f"{run['trained'] / run['seconds']:8.0f} trained tokens/s, "
              f"{run['real']:,} real of {run['computed']:,} computed tokens "
              f"({100 * padding:.1f}% padding, {run['trained']:,} trained), "
              f"{run['seconds']:.1f} s, train loss {run['loss']:.3f}")
    print(f"  packing / padding: {rate['packing'] / rate['padding']:.2f}x tokens/s")
    print(f"\nreproduce: python bench/packing_speed.py --steps {args.steps} --batch {args.batch} "
          f"--repeats {args.repeats} --recipe {args.recipe}")


if __name__ == "__main__":
    main()
