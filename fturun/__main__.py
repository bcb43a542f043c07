"""``python -m fturun`` (layer 6): what torchrun and accelerate launch run."""

import sys

from .cli import main

sys.exit(main())
