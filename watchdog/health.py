"""Is the fleet healthy? The one-line answer `botfleet check` prints and /healthz serves.

OK only when a watchdog has checked recently and every enabled bot was healthy at that check.
"""

import psycopg

from common.errors import SchemaBehindError
from common.fleet.verdict import CRITICAL, OK, judge  # noqa: F401 (OK: callers read it here)
from common.store import sql
from common.store.connect import connect
from common.store.revision import check_schema
from watchdog.time_limits import PROBE_TIMEOUTS


def check(url, settings, session=None) -> tuple[int, str]:
    """The verdict, on a connection of its own, or in `session` (a context manager yielding a connection)."""
    try:
        with session() if session else connect(url, autocommit=True, timeouts=PROBE_TIMEOUTS) as conn:
            check_schema(conn)
            rows = conn.execute(sql.HEALTH_CHECK).fetchall()
    except psycopg.Error as exc:
        return CRITICAL, f"CRITICAL: database unavailable: {str(exc).strip().splitlines()[0]}"
    except SchemaBehindError as exc:
        return CRITICAL, f"CRITICAL: {exc}"
    return judge(rows, settings.stale_after_s)
