"""Statements the event loop awaits. The routes a busy client calls most (create, read a ticket) run
their one statement here, without a worker thread and its hand-offs; the others share their logic with
the CLI and the bots, which is synchronous, and run in the thread pool on app.state.pool."""


async def fetch_one(request, statement: str, params: dict):
    """The first row of one statement on a connection of app.state.aio_pool (autocommit: its own transaction)."""
    async with request.app.state.aio_pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchone()


async def fetch_all(request, statement: str, params: dict) -> list:
    """Every row of one statement, as fetch_one runs it."""
    async with request.app.state.aio_pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall()
