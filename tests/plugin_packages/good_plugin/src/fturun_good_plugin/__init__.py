"""A test plugin that registers a loss and a metric."""

from fturun import hookimpl


def _squared_hinge(params, context):
    raise NotImplementedError("only registered for validation tests")


@hookimpl
def fturun_register_losses(register):
    register("squared_hinge", _squared_hinge,
             {"type": "object", "properties": {"margin": {"type": "number", "minimum": 0}}},
             "Squared hinge loss (test plugin)")


@hookimpl
def fturun_register_metrics(register):
    register("balanced_accuracy", lambda params, context: None,
             {"type": "object", "properties": {}}, "Balanced accuracy (test plugin)")
