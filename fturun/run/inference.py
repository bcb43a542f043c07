"""A trained model loaded for ``fturun predict`` and ``fturun chat``: its weights from a
:class:`~fturun.run.model_ref.ModelSource` (an adapter merged into its base model, as the
registry serves it), its tokenizer with the chat template it was trained with, and the recipe
it was trained with (columns, ``max_length``, ``generation`` settings); and the one way
fturun generates an answer, streamed token by token when asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from ..plugin.context import BuildContext
from ..plugin.tasks import DEFAULT_MAX_LENGTH, generation_settings, get_task
from .model_ref import ModelSource


@dataclass
class LoadedModel:
    """A model ready to answer."""

    model: Any
    tokenizer: Any
    task: Any  # its :class:`~fturun.plugin.tasks.Task`
    recipe: dict  # the resolved recipe it was trained with
    source: ModelSource
    recipe_dir: str = "."  # where the recipe's relative paths are found

    @property
    def data(self) -> dict:
        """The recipe's ``data`` section."""
        return self.recipe.get("data") or {}

    @property
    def max_length(self) -> int:
        return int(self.data.get("max_length") or DEFAULT_MAX_LENGTH)

    @property
    def chat(self) -> bool:
        """Whether it was trained on conversations (``data.format``), rendered with a chat
        template."""
        return bool(self.data.get("format"))

    def label_names(self) -> list:
        labels = getattr(self.model.config, "id2label", None) or {}
        return [labels[k] for k in sorted(labels)]


def model_plan(source: ModelSource, registry, recipe=None) -> LoadedModel:
    """What is known of ``source`` before its weights load: the recipe it was trained with
    (``recipe``, a :class:`~fturun.recipe.load.Recipe`, replaces it) and its task; the model
    and tokenizer are None until :func:`load_weights`. Raises :class:`UsageError` when no
    recipe is known."""
    data = recipe.data if recipe is not None else source.recipe
    if data is None:
        raise UsageError(f"model '{source.ref}': the recipe it was trained with is not known "
                         "(no recipe.json beside the folder, no recipe/resolved.json in its "
                         "run); name one with --recipe RECIPE")
    loaded = LoadedModel(None, None, get_task(registry, data.get("task",
                                                                 "sequence-classification")),
                         data, source)
    loaded.recipe_dir = recipe.base_dir if recipe is not None else source.recipe_dir
    return loaded


def load_weights(loaded: LoadedModel) -> LoadedModel:
    """Load the model (an adapter merged into its base) and its tokenizer on CPU, or the GPU
    when there is one. Raises :class:`UsageError` when it cannot be loaded from what is
    there."""
    from ..tracking.model import NotLoggable, load_trained_model

    source, task, data = loaded.source, loaded.task, loaded.recipe
    context = BuildContext(recipe=data, task=task.name, recipe_dir=loaded.recipe_dir)
    context.task_record = task
    saved = {"adapter" if source.adapter else "model": source.folder}
    try:
        trained = load_trained_model(task, saved, context, data)
    except NotLoggable as exc:
        raise UsageError(f"model '{source.ref}' cannot be loaded: {exc}") from None
    tokenizer = trained.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    import torch

    model = trained.model.to("cuda") if torch.cuda.is_available() else trained.model
    model.eval()
    loaded.model, loaded.tokenizer = model, tokenizer
    return loaded


def load_model(source: ModelSource, registry, recipe=None) -> LoadedModel:
    """:func:`model_plan`, then :func:`load_weights`."""
    return load_weights(model_plan(source, registry, recipe))


def generate_answer(loaded: LoadedModel, ids: list, stream=None, stop_ids=None) -> str:
    """The text ``loaded``'s model generates after the token ids ``ids``, with the recipe's
    ``generation`` settings; ``stream(text)`` gets each new piece as it is decoded."""
    import torch

    model, tokenizer = loaded.model, loaded.tokenizer
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    settings = generation_settings(loaded.recipe, encoder_decoder=encoder_decoder)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    streamer = _Streamer(tokenizer, stream, skip=0 if encoder_decoder else len(ids)) \
        if stream else None
    stop = {"eos_token_id": list(stop_ids)} if stop_ids else {}
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                pad_token_id=tokenizer.pad_token_id, use_cache=True,
                                streamer=streamer, **settings, **stop)
    generated = output[0] if encoder_decoder else output[0, len(ids):]
    return tokenizer.decode(generated, skip_special_tokens=True).strip()


class _Streamer:
    """A ``generate()`` streamer that hands ``stream`` the text decoded so far, piece by piece
    (the prompt skipped; whitespace at the start of the answer left out, as the answer is
    stripped)."""

    def __init__(self, tokenizer, stream, skip: int):
        self.tokenizer, self.stream, self.skip = tokenizer, stream, skip
        self.ids, self.shown = [], ""

    def put(self, value) -> None:
        values = value.reshape(-1).tolist()
        if self.skip:  # the prompt comes first, in one piece
            taken = min(self.skip, len(values))
            self.skip -= taken
            values = values[taken:]
        self.ids += values
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        if text.endswith("\ufffd"):  # half a character: wait for the rest
            return
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.stream(text[len(self.shown):])
            self.shown = text

    def end(self) -> None:
        """Nothing left: every piece was handed on as it came."""
