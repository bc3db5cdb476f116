"""The one way botfleet, its tests and its benchmark wait for something: poll with a deadline."""

import time

POLL_INTERVAL_S = 0.05


def wait_until(predicate, timeout_s, what, interval_s=POLL_INTERVAL_S):
    """Poll `predicate` until it returns something truthy, and return that; TimeoutError at the deadline.

    `what` names the condition in the error; it may be a function, called at the deadline to
    describe the state then (logs, counts).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what() if callable(what) else what}")
        time.sleep(interval_s)
