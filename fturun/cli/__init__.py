"""The ``fturun`` command line (layer 6): arguments in, exit codes out. Nothing imports it."""

from .main import main

__all__ = ["main"]
