"""The one clock: botfleet_now() in the database, read by every statement that stamps or compares a time.

Python code never compares a database time with its host's clock: it asks the database (`now`) or has
the statement do the arithmetic. `shift` moves the clock of the whole fleet forward at once (every bot
and watchdog reads the same row), which is how the tests run hours of ticket lifetime in seconds.
"""

from datetime import datetime

from common.store import sql


def now(conn) -> datetime:
    return conn.execute(sql.CLOCK_NOW).fetchone()["now"]


def shift(conn, by_s: float) -> float:
    """Move the fleet's clock forward by `by_s` seconds (committed at once); the total offset now."""
    offset_s = conn.execute(sql.CLOCK_SHIFT, {"by_s": by_s}).fetchone()["offset_s"]
    conn.commit()
    return offset_s
