"""Durations written as `90s`, `15m`, `2h`, `30d` (or `250ms`) in config files, and back."""

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
# Largest first: a duration is written in the largest unit that holds it whole.
_UNITS_LARGEST_FIRST = sorted(_UNIT_SECONDS.items(), key=lambda item: -item[1])


def parse_duration_s(text) -> float:
    """Seconds in a duration string; raises ValueError naming the accepted forms."""
    if isinstance(text, bool):
        raise ValueError(f"bad duration {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"bad duration {text!r}: negative")
        return float(text)
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"bad duration {text!r} (use a number and a unit: 250ms, 90s, 15m, 2h, 30d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """A duration as config writes it (2592000 -> `30d`, 5400 -> `90m`, 0.25 -> `250ms`); parse_duration_s
    reads every result back to the same seconds."""
    for unit, unit_s in _UNITS_LARGEST_FIRST:
        count = round(seconds / unit_s, 6)
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    # Below a millisecond, or not a whole number of one: milliseconds with a decimal point, never an exponent.
    return f"{seconds * 1000:.3f}".rstrip("0").rstrip(".") + "ms" if seconds else "0s"
