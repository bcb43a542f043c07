"""The "did you mean" of every message that names a wrong word."""

from __future__ import annotations

import difflib


def suggest(word: str, candidates) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
