"""Numbers read from text people wrote: ASCII digits only."""

from __future__ import annotations

import re

WHOLE = re.compile(r"[+-]?[0-9]+")


def ascii_int(text: str | None) -> int:
    """int() of ASCII digits only; ValueError otherwise (int() also reads '1_0' as 10, and other scripts' digits)."""
    if text is None or not WHOLE.fullmatch(text.strip()):
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)
