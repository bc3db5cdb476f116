"""Pools of connections, for a process that serves many requests at once (the HTTP API); opened the same
way as every botfleet connection (connect.py), and kept out of the bots' imports."""

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from common.store import sql
from common.store.connect import CONNECT_TIMEOUT_S, SessionTimeouts, libpq_url, set_timeouts

# How long a request waits for a free connection before it fails (psycopg_pool.PoolTimeout): as long as
# opening one may take. Waiting longer means the database is away or every connection is stuck, and the
# caller is better told so than kept waiting.
POOL_WAIT_S = CONNECT_TIMEOUT_S


def _connection_settings(application_name: str) -> dict:
    return {"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": application_name[:63]}


def connection_pool(url: str, *, min_size: int, max_size: int, application_name: str,
                    timeouts: SessionTimeouts) -> ConnectionPool:
    """Autocommit connections with dict rows and the session's `timeouts`, opened at once; closed by its owner."""
    return ConnectionPool(libpq_url(url), min_size=min_size, max_size=max_size, open=True, name=application_name,
                          kwargs=_connection_settings(application_name), timeout=POOL_WAIT_S,
                          configure=lambda conn: set_timeouts(conn, timeouts))


async def async_connection_pool(url: str, *, min_size: int, max_size: int, application_name: str,
                                timeouts: SessionTimeouts) -> AsyncConnectionPool:
    """The same connections for an event loop: statements awaited there, without a thread each."""
    async def configure(conn):
        await conn.execute(sql.SESSION_TIMEOUTS, timeouts.params())

    pool = AsyncConnectionPool(libpq_url(url), min_size=min_size, max_size=max_size, open=False,
                               name=application_name, kwargs=_connection_settings(application_name),
                               timeout=POOL_WAIT_S, configure=configure)
    await pool.open()
    return pool


async def async_connection(url: str, *, application_name: str, timeouts: SessionTimeouts):
    """One such connection on its own, for a process's LISTEN beside its pools (the console's live updates)."""
    conn = await psycopg.AsyncConnection.connect(libpq_url(url), **_connection_settings(application_name))
    await conn.execute(sql.SESSION_TIMEOUTS, timeouts.params())
    return conn
