"""The ``confusion_matrix`` callback: when training ends, predict the eval data with the final
(or best, with ``load_best_model_at_end``) model, draw a confusion matrix labelled with the label
names, save it as a PNG in the output dir and log it to the run's MLflow tracker."""

from __future__ import annotations

import os

from .losses import IGNORE_INDEX, logits_of


def confusion_counts(predictions, references, n_labels: int):
    """``[true, predicted]`` counts as an ``n_labels x n_labels`` integer array; references of
    -100 are skipped."""
    import numpy as np

    predictions = np.asarray(predictions).reshape(-1)
    references = np.asarray(references).reshape(-1)
    keep = references != IGNORE_INDEX
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (references[keep], predictions[keep]), 1)
    return matrix


def draw_confusion_matrix(matrix, label_names, path: str, normalize: bool = True,
                          title: str = "Confusion matrix (eval)") -> str:
    """Draw ``matrix`` (rows: true labels, columns: predictions) into a PNG at ``path``, with
    row fractions instead of counts when ``normalize``. Uses matplotlib's Agg canvas directly (no
    pyplot, no display). Returns ``path``."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = [str(x) for x in (label_names or range(n))][:n]
    names += [str(i) for i in range(len(names), n)]
    values = matrix.astype(float)
    if normalize:
        values = values / np.clip(values.sum(axis=1, keepdims=True), 1, None)
    size = max(4.0, 0.7 * n + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" - row fractions" if normalize else " - counts"))
    threshold = (1.0 if normalize else (values.max() if values.size else 0)) / 2
    for i in range(n):
        for j in range(n):
            text = f"{values[i, j]:.2f}" if normalize else str(int(matrix[i, j]))
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def predict(model, dataloader):
    """Arg-maxed predictions and labels of a classification model over a dataloader of
    batches with ``labels``; returns ``(predictions, references)`` as flat numpy arrays."""
    import numpy as np
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions, references = [], []
    try:
        with torch.no_grad():
            for batch in dataloader:
                batch = dict(batch)
                labels = batch.pop("labels", None)
                if labels is None:
                    continue
                inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                outputs = model(**inputs)
                logits = logits_of(outputs)
                predictions.append(logits.argmax(-1).reshape(-1).cpu().numpy())
                references.append(labels.reshape(-1).cpu().numpy())
    finally:
        model.train(was_training)
    if not predictions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(predictions), np.concatenate(references)


def confusion_matrix(params, context):
    """A ``transformers.TrainerCallback`` writing ``<output_dir>/confusion_matrix.png`` at the end
    of training (needs eval data: the Trainer's eval dataloader) and logging it with
    ``context.tracker.log_artifact``."""
    from transformers import TrainerCallback

    normalize, filename = params["normalize"], params["filename"]  # defaults filled in

    class ConfusionMatrixCallback(TrainerCallback):
        path = None

        def on_train_end(self, args, state, control, model=None, eval_dataloader=None,
                         **kwargs):
            if not state.is_world_process_zero or model is None:
                return
            if eval_dataloader is None:
                context.log("confusion_matrix: no eval data was evaluated during training; "
                            "no confusion matrix drawn")
                return
            predictions, references = predict(model, eval_dataloader)
            keep = references != IGNORE_INDEX
            if not keep.any():
                context.log("confusion_matrix: the eval data has no labels; nothing drawn")
                return
            names = list(context.label_names or [])
            n = max(len(names), int(predictions.max()) + 1, int(references[keep].max()) + 1)
            matrix = confusion_counts(predictions, references, n)
            path = os.path.join(args.output_dir, filename)
            draw_confusion_matrix(matrix, names, path, normalize=normalize)
            self.path = path
            context.log(f"confusion matrix: {path}")
            # never None: under `fturun check` and with tracking off it does nothing
            context.tracker.log_artifact(path)

    return ConfusionMatrixCallback()
