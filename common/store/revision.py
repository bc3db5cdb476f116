"""Can this code run against the database's schema? Read without Alembic or SQLAlchemy.

A schema behind the code is refused (`botfleet db upgrade`). A schema ahead of it is accepted while
it stays compatible: migrations expand first (add what new code needs, which old code ignores) and
contract later, and the database records the oldest code revision that still works with it
(botfleet_schema.compatible_since). So a fleet can be upgraded one process at a time.
"""

import psycopg

from common.errors import SchemaBehindError
from common.store import sql
from common.store.migrations import SCHEMA_HEAD


def _one(conn, statement):
    try:
        with conn.transaction():
            row = conn.execute(statement).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return (next(iter(row.values())) if isinstance(row, dict) else row[0]) if row else None


def schema_revision(conn) -> str | None:
    return _one(conn, sql.SCHEMA_REVISION)


def check_schema(conn) -> str:
    """The database's revision, if this code can run against it; SchemaBehindError saying what to do if not."""
    revision = schema_revision(conn)
    if revision == SCHEMA_HEAD:
        return revision
    if revision is None or revision < SCHEMA_HEAD:
        found = "empty (no botfleet tables)" if revision is None else f"at revision {revision}"
        raise SchemaBehindError(
            f"database schema is {found}; this botfleet needs revision {SCHEMA_HEAD}: run `botfleet db upgrade`")
    compatible_since = _one(conn, sql.SCHEMA_COMPATIBLE_SINCE)
    if compatible_since is not None and compatible_since <= SCHEMA_HEAD:
        return revision
    raise SchemaBehindError(
        f"database schema is at revision {revision}, ahead of this botfleet (revision {SCHEMA_HEAD}), and "
        f"needs botfleet of revision {compatible_since or revision} or newer: upgrade botfleet")
