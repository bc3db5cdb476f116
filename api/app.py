"""The API's application: routes, errors, the body limit, a pool of database connections."""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import console, errors, jobs, lock, statusek, statusek_compat, tickets, types, workers
from api.auth import TokenCache
from api.content_type import JsonBodies
from api.limits import BodyLimit
from api.presence import CountRequests, Presence
from common import __version__
from common.store import connections
from common.store.connect import SessionTimeouts
from common.store.pool import async_connection_pool, connection_pool
from common.store.sync import sync_status_models

# The JSON around a payload (metaservice, type, creator, ...) on top of the fleet's payload limit.
ENVELOPE_BYTES = 16 * 1024


def session_timeouts(config) -> SessionTimeouts:
    """The API is watched as a bot: its heartbeat takes a connection of the same pool as the routes, once per
    heartbeat interval, and must land within the hung threshold. So no statement keeps a connection longer than
    the hung threshold less one interval (4 s as shipped); a lock is waited for half of that, which leaves the
    statement its own time (a move by hand tries again within its wait, common/tickets/manual.py). A route that
    gives up answers 503 (api/errors.py)."""
    statement_timeout_s = config.hung_after_s - config.heartbeat_interval_s
    return SessionTimeouts(lock_timeout_s=statement_timeout_s / 2, statement_timeout_s=statement_timeout_s)


def create_app(config, url: str, spec=None) -> FastAPI:
    """The application; with `spec` (the built-in bot botfleet-api-1-serve), it registers and heartbeats as
    that bot, so the watchdog covers it."""
    presence = Presence(config, spec) if spec is not None else None

    @asynccontextmanager
    async def lifespan(app):
        timeouts = session_timeouts(config)
        # The pools' sizes are counted in the fleet's connection budget, so they are set there.
        app.state.pool = connection_pool(url, min_size=connections.API_POOL_MIN, max_size=connections.API_POOL_MAX,
                                         application_name=connections.API_APPLICATION_NAME, timeouts=timeouts)
        app.state.aio_pool = await async_connection_pool(
            url, min_size=connections.API_AIO_POOL_MIN, max_size=connections.API_AIO_POOL_MAX,
            application_name=connections.API_APPLICATION_NAME, timeouts=timeouts)
        app.state.tokens = TokenCache(app.state.pool)
        with app.state.pool.connection() as conn:  # the objects it creates instances of, with their statuses
            sync_status_models(conn, config.status_models)
        live = console.start_live(app, url, timeouts)
        beating = None
        if presence is not None:
            await asyncio.to_thread(presence.register, app.state.pool)
            beating = asyncio.create_task(presence.beat_forever())
        try:
            yield
        finally:
            if beating is not None:
                beating.cancel()
                await asyncio.to_thread(presence.deregister)
            await live.stop()
            app.state.pool.close()
            await app.state.aio_pool.close()

    # The fleet's figures are the watchdog's Prometheus metrics; FastAPI's OpenTelemetry hooks, on by default,
    # would cost every request without anything to report to.
    app = FastAPI(title="botfleet", version=__version__, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
                  description="Tickets of the fleet over HTTP. Every route needs a bearer token "
                              "(`botfleet token create`) with the scope it names.")
    app.state.config = config
    errors.install(app)
    app.include_router(tickets.router)
    app.include_router(types.router)
    app.include_router(lock.router)
    app.include_router(jobs.router)
    app.include_router(statusek.router)
    app.include_router(statusek_compat.router)  # the same, as the upstream service answers
    app.include_router(workers.router)
    console.install(app)  # the web console, /console/, for people
    # FastAPI's own max_body_size answers a too large Content-Length in plain text; this answers in the
    # API's error shape, as every refusal does.
    app.add_middleware(BodyLimit, max_bytes=config.max_payload_bytes + ENVELOPE_BYTES)
    app.add_middleware(JsonBodies, own_bodies=(f"{statusek_compat.PREFIX}/", f"{console.PREFIX}/"))
    if presence is not None:
        app.add_middleware(CountRequests, presence=presence)
    return app
