"""``python -m fturun`` (what torchrun and accelerate launch run)."""

import sys

from .cli import main

sys.exit(main())
