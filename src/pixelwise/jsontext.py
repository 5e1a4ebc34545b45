"""JSON that every strict parser reads: undefined numbers (NaN, infinities) become null."""

from __future__ import annotations

import json
import math


def without_nonfinite(value):
    """`value` with every NaN or infinite float inside dicts, lists and tuples replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: without_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nonfinite(item) for item in value]
    return value


def strict_json(value, indent: int | None = 2) -> str:
    """`json.dumps` of `value` with non-finite numbers as null (plain JSON has no NaN)."""
    return json.dumps(without_nonfinite(value), indent=indent, allow_nan=False)
