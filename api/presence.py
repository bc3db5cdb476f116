"""The API's process as the fleet sees a bot's: registered in bot_processes, heartbeating from the server's
event loop (so a loop that hangs stops the heartbeat and the watchdog restarts the process), and
deregistered at shutdown. Requests answered count as processed, 5xx answers as failed."""

import asyncio
import logging

from common.store import sql
from common.store.processes import process_owner, register_process
from common.store.sync import sync_config

log = logging.getLogger("botfleet.api")


class Presence:
    def __init__(self, config, spec):
        self.config, self.spec, self.pool = config, spec, None
        self.owner = process_owner(spec.name)
        self.processed = self.failed = 0
        self.beats = 0  # the API's loop is uvicorn's; its heartbeats stand in for bot_processes.loop_turns

    def register(self, pool) -> None:
        self.pool = pool
        with pool.connection() as conn:
            sync_config(conn, self.config, bot_names={self.spec.name})
            with conn.transaction():
                register_process(conn, self.spec.name, self.owner)
        log.info("API registered as %s", self.owner)

    def beat(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(sql.HEARTBEAT, {
                "owner": self.owner, "lease_s": self.spec.lease_s, "held": [], "processed": self.processed,
                "failed": self.failed, "bot": self.spec.name,
                "dead_after_s": self.config.hung_after_s, "loop_turns": self.beats})

    async def beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            self.beats += 1
            try:
                await asyncio.to_thread(self.beat)
            except Exception as exc:  # the database away: the next beat tries again; the watchdog judges
                log.warning("heartbeat failed: %s", exc)

    def deregister(self) -> None:
        try:
            with self.pool.connection(timeout=5) as conn:
                conn.execute(sql.DEREGISTER_PROCESS, {"owner": self.owner, "processed": self.processed,
                                                      "failed": self.failed})
        except Exception as exc:
            log.warning("could not deregister (%s); the watchdog will see the heartbeat stop", exc)


class CountRequests:
    """ASGI middleware: counts the answers into the presence's processed and failed."""

    def __init__(self, app, presence: Presence):
        self.app, self.presence = app, presence

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message):
            if message["type"] == "http.response.start":
                self.presence.processed += 1
                if message["status"] >= 500:
                    self.presence.failed += 1
            await send(message)
        await self.app(scope, receive, counted)
