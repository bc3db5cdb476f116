"""What a user's name, address and delivery window must look like: one rule for fleet.yaml's `people:`
and for `botfleet user|group`."""

import re
from datetime import time

PERSON_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_window(text) -> tuple[time, time] | None:
    """'08:00-18:00' as (start, end); None for no window. A window may run past midnight (22:00-06:00).
    A ValueError says what is wrong."""
    if text is None:
        return None
    match = WINDOW.match(str(text).strip())
    try:
        start, end = (time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4]))) if match else (None, None)
    except ValueError:
        start = None
    if start is None:
        raise ValueError(f"delivery window {text!r} must be HH:MM-HH:MM, for example 08:00-18:00")
    if start == end:
        raise ValueError(f"delivery window {text!r} is empty; leave it out to deliver at any time")
    return start, end
