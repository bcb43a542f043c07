"""fturun: declarative, plugin-based fine-tuning recipes for the Hugging Face Trainer."""

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
