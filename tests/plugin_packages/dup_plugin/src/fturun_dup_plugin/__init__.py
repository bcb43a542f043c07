"""A test plugin that registers a name the built-ins already use, plus a fine one."""

from fturun import hookimpl


@hookimpl
def fturun_register_losses(register):
    register("focal", lambda params, context: None, {"type": "object"}, "Another focal loss")
    register("dup_only_loss", lambda params, context: None, {"type": "object"}, "Fine on its own")
