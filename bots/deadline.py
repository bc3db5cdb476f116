"""When one of the loop's services is next due, on the monotonic clock: the loop sleeps until the soonest."""

import time


class Deadline:
    def __init__(self, in_s: float | None = None):
        self.at_mono = None if in_s is None else time.monotonic() + in_s

    def at_most_in(self, delay_s: float):
        """Due in delay_s at the latest (a sooner due time stays)."""
        at_mono = time.monotonic() + max(0.0, delay_s)
        self.at_mono = at_mono if self.at_mono is None else min(self.at_mono, at_mono)

    def reset_in(self, delay_s: float | None):
        """Due in delay_s from now, whatever was set before (None: not until told)."""
        self.at_mono = None if delay_s is None else time.monotonic() + max(0.0, delay_s)

    def now(self):
        self.at_mono = time.monotonic()

    def due(self, now_mono: float) -> bool:
        return self.at_mono is not None and now_mono >= self.at_mono

    def take(self, now_mono: float) -> bool:
        """Whether it is due; if so, it is not due again until set."""
        if not self.due(now_mono):
            return False
        self.at_mono = None
        return True
