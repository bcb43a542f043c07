"""A third-party reward for the tests: ``broken`` breaks the reward contract on purpose, on the
first completion of a batch, so the error can be checked to name the reward and that row."""

from __future__ import annotations

from fturun.api import hookimpl

FTURUN_API = ">=1.3,<2"

BROKEN_SCHEMA = {"type": "object", "required": ["fault"], "properties": {
    "fault": {"enum": ["length", "nan", "raise"],
              "description": "'length': one score too few; 'nan': NaN for the first "
                             "completion; 'raise': a KeyError on the first completion"}}}


def broken(params, context):
    """A reward that scores 1.0, but breaks as ``params.fault`` says (see the schema)."""
    fault = params["fault"]

    def broken_reward(prompts, completions, **columns):
        if fault == "length":
            return [1.0] * (len(completions) - 1)
        if fault == "raise":
            return [{}["missing"] for _ in completions]  # a KeyError
        return [float("nan")] + [1.0] * (len(completions) - 1)

    return broken_reward


@hookimpl
def fturun_register_rewards(register):
    register("broken", broken, BROKEN_SCHEMA,
             "1.0, except that it breaks its contract on purpose (params.fault)")
