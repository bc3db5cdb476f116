"""Is the database's schema the one this code was written for? Read without Alembic or SQLAlchemy."""

import psycopg

from common.errors import SchemaBehindError
from common.store import sql
from common.store.migrations import SCHEMA_HEAD


def schema_revision(conn) -> str | None:
    try:
        with conn.transaction():
            row = conn.execute(sql.SCHEMA_REVISION).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return (row["version_num"] if isinstance(row, dict) else row[0]) if row else None


def check_schema(conn):
    """Refuse to run against a schema that is not the one this code was written for."""
    revision = schema_revision(conn)
    if revision != SCHEMA_HEAD:
        found = "empty (no botfleet tables)" if revision is None else f"at revision {revision}"
        raise SchemaBehindError(
            f"database schema is {found}; this botfleet needs revision {SCHEMA_HEAD}: run `botfleet db upgrade`")
