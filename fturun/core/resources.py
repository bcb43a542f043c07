"""How much room there is: free disk, available memory, and where the ``datasets`` cache is."""

from __future__ import annotations

import os
import shutil


def free_bytes(path: str) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def available_memory() -> int:
    """Memory available to new allocations (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def datasets_cache_dir() -> str:
    """Where ``datasets`` writes the Arrow files of sources (``$HF_DATASETS_CACHE``)."""
    import datasets

    return str(datasets.config.HF_DATASETS_CACHE)
