"""Pools of connections, for a process that serves many requests at once (the HTTP API); opened the same
way as every botfleet connection (connect.py), and kept out of the bots' imports."""

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from common.store.connect import CONNECT_TIMEOUT_S, libpq_url


def _connection_settings(application_name: str) -> dict:
    return {"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": application_name[:63]}


def connection_pool(url: str, *, min_size: int, max_size: int, application_name: str) -> ConnectionPool:
    """Autocommit connections with dict rows, opened at once; closed by its owner."""
    return ConnectionPool(libpq_url(url), min_size=min_size, max_size=max_size, open=True, name=application_name,
                          kwargs=_connection_settings(application_name))


async def async_connection_pool(url: str, *, min_size: int, max_size: int,
                                application_name: str) -> AsyncConnectionPool:
    """The same connections for an event loop: statements awaited there, without a thread each."""
    pool = AsyncConnectionPool(libpq_url(url), min_size=min_size, max_size=max_size, open=False,
                               name=application_name, kwargs=_connection_settings(application_name))
    await pool.open()
    return pool
