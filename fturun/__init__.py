"""fturun (layer 2): declarative, plugin-based fine-tuning recipes for the Hugging Face Trainer."""

from .core import clock  # noqa: F401 - first: the process start time
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
