"""Numbers people give: read from text in ASCII digits only, or checked as values."""

from __future__ import annotations

import math
import re

WHOLE = re.compile(r"[+-]?[0-9]+")


def ascii_int(text: str | None) -> int:
    """int() of ASCII digits only; ValueError otherwise (int() also reads '1_0' as 10, and other scripts' digits)."""
    if text is None or not WHOLE.fullmatch(text.strip()):
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def is_finite_number(value: object) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
