"""A pool of connections, for a process that serves many requests at once (the HTTP API); opened the same
way as every botfleet connection (connect.py), and kept out of the bots' imports."""

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from common.store.connect import CONNECT_TIMEOUT_S, libpq_url


def connection_pool(url: str, *, min_size: int, max_size: int, application_name: str) -> ConnectionPool:
    """Autocommit connections with dict rows, opened at once; closed by its owner."""
    return ConnectionPool(libpq_url(url), min_size=min_size, max_size=max_size, open=True, name=application_name,
                          kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S,
                                  "application_name": application_name[:63]})
