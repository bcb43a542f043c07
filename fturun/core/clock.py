"""When this process started running fturun (for "seconds to first step" figures). Imported by
``fturun/__init__.py`` first, so the time is taken when the package is imported."""

import time

#: seconds since the epoch at which the ``fturun`` package was first imported
PROCESS_START = time.time()
