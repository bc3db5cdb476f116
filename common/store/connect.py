"""The one way botfleet opens a PostgreSQL connection."""

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from common.store import sql


def libpq_url(url: str) -> str:
    # SQLAlchemy spells the driver into the scheme; libpq does not know it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class SessionTimeouts:
    """How long a session's statements may wait for a lock (a row, a table), and run at all. Past either the
    statement fails (LockNotAvailable, QueryCanceled) and the session stays usable: each process chooses
    them so that it gives up before anyone takes it for hung."""

    lock_timeout_s: float
    statement_timeout_s: float

    def params(self) -> dict:
        # 0 would mean no limit: a limit too small to count in milliseconds is the smallest there is.
        return {"lock_timeout_ms": max(1, round(self.lock_timeout_s * 1000)),
                "statement_timeout_ms": max(1, round(self.statement_timeout_s * 1000))}


def set_timeouts(conn, timeouts: SessionTimeouts) -> None:
    """Set for the session, and committed at once: a transaction the caller rolls back later must not take
    them back with it."""
    conn.execute(sql.SESSION_TIMEOUTS, timeouts.params())
    if not conn.autocommit:
        conn.commit()


def connect(url: str, *, autocommit=False, application_name=None, rows=dict_row,
            timeouts: SessionTimeouts | None = None) -> psycopg.Connection:
    kwargs = {"application_name": application_name[:63]} if application_name else {}
    conn = psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=rows, connect_timeout=CONNECT_TIMEOUT_S,
                           **kwargs)
    if timeouts is not None:
        try:
            set_timeouts(conn, timeouts)
        except BaseException:
            conn.close()
            raise
    return conn


def close_quietly(conn):
    """Close a connection that may already be broken; a failure to close it is no news."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def redacted(url: str) -> str:
    """A connection string fit to print: its password, if any, replaced."""
    try:
        params = conninfo_to_dict(libpq_url(url))
    except psycopg.ProgrammingError:
        return "(a connection string that does not parse)"
    if params.get("password"):
        params["password"] = "********"
    return make_conninfo(**params)
