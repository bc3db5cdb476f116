"""Is the fleet healthy? The one-line answer `botfleet check` prints and /healthz serves.

OK only when a watchdog has checked recently and every enabled bot was healthy at that check.
"""

import psycopg

from common.errors import SchemaBehindError
from common.store import sql
from common.store.connect import connect
from common.store.revision import check_schema

OK, CRITICAL = 0, 2  # exit codes as monitoring plugins use them



def judge(rows, stale_s: float) -> tuple[int, str]:
    """(exit code, line) from HEALTH_CHECK rows. Pure."""
    watchdog_age_s = rows[0]["watchdog_age_s"] if rows else None
    if watchdog_age_s is None:
        return CRITICAL, "CRITICAL: no watchdog has ever checked this fleet (is `botfleet watchdog run` running?)"
    if watchdog_age_s > stale_s:
        return CRITICAL, f"CRITICAL: watchdog heartbeat is stale: last check {watchdog_age_s:.1f}s ago (stale after {stale_s:g}s)"
    enabled = [r for r in rows if r["enabled"]]
    bad = []
    for row in enabled:
        if row["health"] is None or row["health_age_s"] is None or row["health_age_s"] > stale_s:
            bad.append(f"{row['name']} not checked recently")
        elif row["health"] != "healthy":
            reason = row["health_reason"] or row["health"]
            bad.append(reason if reason.startswith(row["name"]) else f"{row['name']} {row['health']}: {reason}")
    disabled = len(rows) - len(enabled)
    if bad:
        return CRITICAL, f"CRITICAL: {len(bad)} of {len(enabled)} bot(s) unhealthy: " + "; ".join(bad)
    return OK, (f"OK: watchdog checked {watchdog_age_s:.1f}s ago; {len(enabled)} bot(s) healthy"
                + (f", {disabled} disabled" if disabled else ""))


def check(url, settings, session=None) -> tuple[int, str]:
    """The verdict, on a connection of its own, or in `session` (a context manager yielding a connection)."""
    try:
        with session() if session else connect(url, autocommit=True) as conn:
            check_schema(conn)
            rows = conn.execute(sql.HEALTH_CHECK).fetchall()
    except psycopg.Error as exc:
        return CRITICAL, f"CRITICAL: database unavailable: {str(exc).strip().splitlines()[0]}"
    except SchemaBehindError as exc:
        return CRITICAL, f"CRITICAL: {exc}"
    return judge(rows, settings.stale_after_s)
