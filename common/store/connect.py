"""The one way botfleet opens a PostgreSQL connection."""

import psycopg
from psycopg.rows import dict_row


def libpq_url(url: str) -> str:
    # SQLAlchemy spells the driver into the scheme; libpq does not know it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def connect(url: str, *, autocommit=False, application_name=None, rows=dict_row) -> psycopg.Connection:
    kwargs = {"application_name": application_name[:63]} if application_name else {}
    return psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=rows, connect_timeout=5, **kwargs)
