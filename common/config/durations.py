"""Durations written as `90s`, `15m`, `2h`, `30d` (or `250ms`) in config files."""

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


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
