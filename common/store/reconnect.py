"""Reconnect backoff shared by every process that must survive a database outage.

The watchdog also uses RECONNECT_BACKOFF_MAX_S to know how long bots may take to come back after
an outage, so there is exactly one value.
"""

RECONNECT_BACKOFF_MIN_S = 0.1
RECONNECT_BACKOFF_MAX_S = 5.0


class Backoff:
    """Delays that double from min_s up to max_s; reset() after a success."""

    def __init__(self, min_s=RECONNECT_BACKOFF_MIN_S, max_s=RECONNECT_BACKOFF_MAX_S):
        self.min_s, self.max_s = min_s, max_s
        self.delay_s = min_s

    def next_s(self) -> float:
        """The delay to wait now; the following one is twice as long (up to max_s)."""
        delay_s, self.delay_s = self.delay_s, min(self.max_s, self.delay_s * 2)
        return delay_s

    def reset(self):
        self.delay_s = self.min_s
