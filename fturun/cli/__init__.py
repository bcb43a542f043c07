"""cli (layer 6): the ``fturun`` command line: arguments in, exit codes out. Nothing imports it."""

from .main import main

__all__ = ["main"]
