"""Reconnect backoff shared by every process that must survive a database outage.

The watchdog also uses RECONNECT_BACKOFF_MAX_S to know how long bots may take to come back after
an outage, so there is exactly one value.
"""

import random

import psycopg

# The connection is gone: reconnect (with Backoff) and look at everything again.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
# The database gave up on a statement for us (a lock held elsewhere, a statement too slow): not a lost
# connection, and not the caller's fault. Both are OperationalErrors, so they are caught first.
TRY_LATER = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)

RECONNECT_BACKOFF_MIN_S = 0.1
RECONNECT_BACKOFF_MAX_S = 5.0


class Backoff:
    """Delays that double from min_s up to max_s, with jitter; reset() after a success."""

    def __init__(self, min_s=RECONNECT_BACKOFF_MIN_S, max_s=RECONNECT_BACKOFF_MAX_S, rng=None):
        self.min_s, self.max_s = min_s, max_s
        self.delay_s = min_s
        self.rng = rng or random.Random()

    def next_s(self) -> float:
        """The delay to wait now, between half and all of the current step; the next step is twice as long
        (up to max_s). The random half keeps a fleet that lost its database from reconnecting in lockstep."""
        step_s, self.delay_s = self.delay_s, min(self.max_s, self.delay_s * 2)
        return step_s / 2 + self.rng.uniform(0, step_s / 2)

    def reset(self):
        self.delay_s = self.min_s
