"""The MLflow pyfunc model fturun logs where MLflow's ``transformers`` flavor cannot hold the
trained model: a task whose pipeline the installed transformers no longer has
(``text2text-generation`` is gone in transformers 5), or an adapter that cannot be merged into
its base model (prefix, prompt and p-tuning), kept as base model + adapter.

This file is logged as the model's code ("models from code") and runs where the model is
loaded, with the model's pip requirements only: it imports nothing of fturun. Its artifacts:

- ``model``: the model folder (``save_pretrained``) with its tokenizer;
- ``adapter`` (optional): a peft adapter loaded on top of ``model``;
- ``config``: ``fturun_model.json``: ``model_class`` (a transformers auto class name),
  ``pipeline_task``, ``max_length``, ``generation`` (``generate()`` kwargs).

``predict`` takes texts (a list of strings, a string, or a one-column DataFrame) and answers as
the flavor would: a DataFrame of ``label`` and ``score`` (text classification), one
comma-separated tag per word (token classification), the filled token (fill-mask), or the
generated text (generation).
"""

from __future__ import annotations

import json
import warnings

import mlflow
from mlflow.pyfunc import PythonModel

# the signature comes from the input example (the answers' shape depends on the task)
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")


def texts_of(model_input) -> list:
    """The input texts: a string, a list of strings, a DataFrame's first column, or a list of
    one-key dicts (what a serving request may carry)."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # a pandas DataFrame or Series
        frame = model_input.to_frame() if hasattr(model_input, "to_frame") else model_input
        return [str(v) for v in frame.iloc[:, 0].tolist()]
    return [next(iter(v.values())) if isinstance(v, dict) else str(v) for v in model_input]


class FturunModel(PythonModel):
    """A model fturun trained, predicting as its task does (see the module docstring)."""

    def load_context(self, context):
        """Load the model (and adapter) and the tokenizer from the artifacts, on CPU."""
        import transformers

        with open(context.artifacts["config"], encoding="utf-8") as f:
            self.config = json.load(f)
        folder = context.artifacts["model"]
        auto_class = getattr(transformers, self.config["model_class"])
        self.model = auto_class.from_pretrained(folder)
        if context.artifacts.get("adapter"):
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, context.artifacts["adapter"])
        self.model.eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    def predict(self, context, model_input, params=None):
        """Predictions for the input texts (see the module docstring)."""
        import torch

        texts = texts_of(model_input)
        task = self.config["pipeline_task"]
        with torch.no_grad():
            if task == "text-classification":
                return self._classify(texts)
            if task == "token-classification":
                return [self._tag(text) for text in texts]
            if task == "fill-mask":
                return [self._fill(text) for text in texts]
            return [self._generate(text, task) for text in texts]

    def _encode(self, texts, **kwargs):
        return self.tokenizer(texts, truncation=True, max_length=self.config["max_length"],
                              return_tensors="pt", padding=True, **kwargs)

    def _classify(self, texts):
        import pandas as pd

        probs = self.model(**self._encode(texts)).logits.softmax(dim=-1)
        labels = self.model.config.id2label
        best = probs.argmax(dim=-1).tolist()
        return pd.DataFrame({"label": [labels[i] for i in best],
                             "score": [float(probs[row, i]) for row, i in enumerate(best)]})

    def _tag(self, text):
        """One tag per word (the tag of its first word piece), comma-separated."""
        words = text.split()
        batch = self._encode([words], is_split_into_words=True)
        ids = self.model(**batch).logits.argmax(dim=-1)[0].tolist()
        tags, seen = [], set()
        for position, word in enumerate(batch.word_ids(0)):
            if word is not None and word not in seen:
                seen.add(word)
                tags.append(self.model.config.id2label[ids[position]])
        return ",".join(tags)

    def _fill(self, text):
        batch = self._encode([text])
        masked = (batch["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()
        if not len(masked):
            return ""
        logits = self.model(**batch).logits[0, int(masked[0])]
        return self.tokenizer.decode([int(logits.argmax())]).strip()

    def _generate(self, text, task):
        batch = self._encode([text])
        output = self.model.generate(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"],
                                     **self.config.get("generation", {}))[0]
        if task == "text-generation":  # a causal LM's output starts with the prompt
            output = output[batch["input_ids"].shape[1]:]
        return self.tokenizer.decode(output, skip_special_tokens=True).strip()


mlflow.models.set_model(FturunModel())
