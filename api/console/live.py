"""Live updates: one LISTEN per API process, however many pages are open. Notifications only mark what
changed; once a tick, what changed and has someone watching is read once, rendered once, and handed to every
page that shows it (Server-Sent Events). A storm of notifications costs one read per tick; an open page with
nothing changing costs the database nothing between ticks."""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from common.config.builtin import BUILTIN_TYPES
from common.store import connections, sql
from common.store.pool import async_connection

log = logging.getLogger("botfleet.console")

TICK_S = 1.0  # at most one update a second per open page
# Counts move without a notification too: a ticket falls due, a lease ends. A watched type is read again this
# often even when nothing was notified; the fleet's records move with heartbeats, so it goes by those.
TYPE_REFRESH_S = 10.0
RECONNECT_S = 2.0
FLEET = "fleet"


def type_topic(metaservice: str, ticket_type: str) -> str:
    return f"type:{metaservice}/{ticket_type}"


def topics_of_channel(channel: str) -> tuple:
    """The topics a notification on `channel` touches: bf.<metaservice>.<type>.<state> is that type's; the
    lock's channel is the fleet's. Names hold no dots (common/config/names.py), so the split is exact."""
    if channel == sql.LOCK_CHANNEL:
        return (FLEET,)
    parts = channel.split(".")
    if len(parts) == 4 and parts[0] == "bf":
        return (type_topic(parts[1], parts[2]),)
    return ()


@dataclass
class Watched:
    """A topic with pages open on it: their queues, and when it was last read."""

    queues: set = field(default_factory=set)
    read_mono: float = 0.0
    dirty: bool = True


class LiveHub:
    """Started with the API (api/app.py). `renderers` maps a topic's kind ("type", "fleet") to an async function
    (hub, topics) -> {topic: html} that reads and renders those topics once for all their pages."""

    def __init__(self, config, url: str, timeouts, renderers: dict, *, tick_s: float = TICK_S,
                 refresh_s: dict | None = None):
        self.config, self.url, self.timeouts, self.renderers, self.tick_s = config, url, timeouts, renderers, tick_s
        self.refresh_s = {"type": TYPE_REFRESH_S, "fleet": config.heartbeat_interval_s, **(refresh_s or {})}
        self.watched: dict[str, Watched] = {}
        self.latest: dict[str, str] = {}
        self.conn = None  # the listening connection, which the renderers read on too (one statement at a time)
        self._wanted = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="console-live")

    async def stop(self) -> None:
        self._closing.set()
        self._wanted.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def closing_soon(self) -> None:
        """From a signal handler: the server is stopping, so every open stream ends now rather than hold the
        stop up until its timeout (the browsers reconnect to whichever API answers next)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._closing.set)

    @property
    def closing(self) -> asyncio.Event:
        return self._closing

    def subscribe(self, topic: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        self.watched.setdefault(topic, Watched()).queues.add(queue)
        self._wanted.set()
        return queue

    def unsubscribe(self, topic: str, queue: asyncio.Queue) -> None:
        watched = self.watched.get(topic)
        if watched is not None:
            watched.queues.discard(queue)
            if not watched.queues:
                del self.watched[topic]

    def _publish(self, topic: str, html: str) -> None:
        if self.latest.get(topic) == html:
            return  # nothing a page would show changed
        self.latest[topic] = html
        for queue in list(self.watched.get(topic, Watched()).queues):
            if queue.full():  # a page that has not taken the last update gets only the newest
                queue.get_nowait()
            queue.put_nowait(html)

    def _mark(self, channel: str) -> None:
        for topic in topics_of_channel(channel):
            if topic in self.watched:
                self.watched[topic].dirty = True

    def _due_topics(self, now_mono: float) -> list:
        due = []
        for topic, watched in self.watched.items():
            kind = topic.split(":", 1)[0]
            if watched.dirty or now_mono - watched.read_mono >= self.refresh_s[kind]:
                due.append(topic)
        return due

    async def _tick(self) -> None:
        now_mono = time.monotonic()
        by_kind: dict[str, list] = {}
        for topic in self._due_topics(now_mono):
            by_kind.setdefault(topic.split(":", 1)[0], []).append(topic)
            self.watched[topic].dirty, self.watched[topic].read_mono = False, now_mono
        for kind, topics in by_kind.items():
            for topic, html in (await self.renderers[kind](self, topics)).items():
                self._publish(topic, html)

    def channels(self) -> list:
        types = [*self.config.types.values(), *BUILTIN_TYPES.values()]
        return [sql.LOCK_CHANNEL] + [sql.channel(t.metaservice, t.name, code) for t in types for code in t.states]

    async def _listen(self):
        conn = await async_connection(self.url, application_name=connections.API_APPLICATION_NAME + ":live",
                                      timeouts=self.timeouts)
        for name in self.channels():
            await conn.execute(sql.listen(name))
        return conn

    async def _run(self) -> None:
        try:
            await self._serve()
        finally:
            if self.conn is not None:
                await self.conn.close()
                self.conn = None

    async def _serve(self) -> None:
        while not self._closing.is_set():
            if not self.watched:
                # Nobody watching: no connection held, nothing read. The next page to open wakes this.
                if self.conn is not None:
                    await self.conn.close()
                    self.conn = None
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                if self.conn is None:
                    self.conn = await self._listen()
                    for watched in self.watched.values():
                        watched.dirty = True  # what was notified while nobody listened
                async for notify in self.conn.notifies(timeout=self.tick_s):
                    self._mark(notify.channel)
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: the pages keep what they show, and wait
                log.warning("console live updates paused: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
                if self.conn is not None:
                    await self.conn.close()
                    self.conn = None
                await asyncio.sleep(RECONNECT_S)
