"""The one way botfleet opens a PostgreSQL connection."""

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row


def libpq_url(url: str) -> str:
    # SQLAlchemy spells the driver into the scheme; libpq does not know it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


CONNECT_TIMEOUT_S = 5


def connect(url: str, *, autocommit=False, application_name=None, rows=dict_row) -> psycopg.Connection:
    kwargs = {"application_name": application_name[:63]} if application_name else {}
    return psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=rows, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)


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
