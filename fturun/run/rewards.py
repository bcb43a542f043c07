"""The recipe's ``rewards`` (layer 4): each reward component built and wrapped in a
:class:`CheckedReward` that holds it to its contract (``fturun_register_rewards``): one finite
number or None per completion, or the run stops with an error naming the reward and the row."""

from __future__ import annotations

import math
import numbers

from ..core.errors import RecipeRuntimeError
from ..recipe.refs import component_ref

SHOWN_CHARS = 60  # of a prompt or completion quoted in an error


def build_rewards(registry, refs: list, context, build_component) -> tuple[list, list]:
    """``([CheckedReward], [weight])`` of the recipe's ``rewards`` references, built in order;
    a name listed twice is logged as ``name-2``, ``name-3``, ..."""
    rewards, weights, seen = [], [], {}
    for ref in refs:
        name = component_ref(ref)[0]
        seen[name] = seen.get(name, 0) + 1
        shown = name if seen[name] == 1 else f"{name}-{seen[name]}"
        fn = build_component(registry, "reward", ref, context)
        if not callable(fn):
            raise RecipeRuntimeError(f"reward '{name}': its factory returned {fn!r}, not a "
                                     "function reward(prompts, completions, **columns)")
        rewards.append(CheckedReward(shown, fn))
        weights.append(float(ref.get("weight", 1.0)) if isinstance(ref, dict) else 1.0)
    return rewards, weights


def _quote(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


class CheckedReward:
    """A reward function as the Trainer calls it (``__name__`` is what the per-reward metrics
    are logged under), its results checked: see the module."""

    def __init__(self, name: str, fn):
        self.__name__ = name
        self.fn = fn

    def where(self, i: int, prompts, completions, columns: dict) -> str:
        """The row of completion ``i``: its index in the split (the ``row`` column) when the
        task passes it, its prompt and completion."""
        rows = columns.get("row")
        row = f"row {rows[i]}" if isinstance(rows, list) and i < len(rows) \
            else f"completion {i} of the batch"
        return f"{row} (prompt {_quote(prompts[i])}, completion {_quote(completions[i])})"

    def __call__(self, prompts, completions, **columns):
        try:
            scores = self.fn(prompts=prompts, completions=completions, **columns)
        except RecipeRuntimeError as exc:
            raise RecipeRuntimeError(f"reward '{self.__name__}': {exc}") from None
        except Exception as exc:
            i = self._failing_row(prompts, completions, columns)
            at = f" at {self.where(i, prompts, completions, columns)}" if i is not None else ""
            raise RecipeRuntimeError(
                f"reward '{self.__name__}' raised {type(exc).__name__}: {exc}{at}; fix the "
                "reward, or the rows it cannot score (return None for those)") from None
        return self.checked(scores, prompts, completions, columns)

    def checked(self, scores, prompts, completions, columns) -> list:
        """``scores`` as a list of floats / None, or a :class:`RecipeRuntimeError`."""
        if hasattr(scores, "tolist"):  # a numpy array or tensor
            scores = scores.tolist()
        if not isinstance(scores, (list, tuple)) or len(scores) != len(completions):
            got = f"{len(scores)} scores" if isinstance(scores, (list, tuple)) \
                else type(scores).__name__
            raise RecipeRuntimeError(
                f"reward '{self.__name__}' returned {got} for {len(completions)} completions "
                f"(the batch from {self.where(0, prompts, completions, columns)}); a reward "
                "returns a list with one float (or None) per completion")
        out = []
        for i, score in enumerate(scores):
            if score is None:
                out.append(None)
                continue
            if not isinstance(score, numbers.Real) or not math.isfinite(float(score)):
                raise RecipeRuntimeError(
                    f"reward '{self.__name__}' scored {score!r} at "
                    f"{self.where(i, prompts, completions, columns)}; a score is a finite "
                    "number, or None where the reward does not apply")
            out.append(float(score))
        return out

    def _failing_row(self, prompts, completions, columns) -> int | None:
        """The first completion the reward raises on alone, if one does."""
        n = len(completions)
        for i in range(n):
            one = {k: v[i:i + 1] if isinstance(v, list) and len(v) == n else v
                   for k, v in columns.items()}
            try:
                self.fn(prompts=prompts[i:i + 1], completions=completions[i:i + 1], **one)
            except Exception:
                return i
        return None
