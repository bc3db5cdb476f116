"""The console's live updates on a real PostgreSQL: one LISTEN per API process, a notification storm read
once per tick whatever the number of open pages, nothing read while nothing changes, and the counts each
state's box shows (every open ticket counted once: held, parked, due or waiting)."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from api.console.graph import StateCounts
from api.console.live import FLEET, LiveHub, topics_of_channel, type_topic
from api.console.types import read_graphs
from common.store import sql
from common.store.connect import SessionTimeouts
from common.store.pool import async_connection
from common.tickets.create import create_ticket

TIMEOUTS = SessionTimeouts(lock_timeout_s=2, statement_timeout_s=4)
TICK_S = 0.2
STORM_S = 2.0
PAGES = 25


def run(coroutine):
    """asyncio.run on a thread of its own: the main thread may hold another loop (Playwright's, say)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def test_channels_map_to_the_topics_they_touch():
    assert topics_of_channel("bf.testms.pipe.2") == (type_topic("testms", "pipe"),)
    assert topics_of_channel(sql.LOCK_CHANNEL) == (FLEET,)
    assert topics_of_channel("bf.lock.extra") == ()
    assert topics_of_channel("elsewhere") == ()


async def _storm(db_url, config, pages: int) -> tuple[int, int, list]:
    """(reads during a storm of NOTIFYs, reads in the quiet after it, what each page got)."""
    reads = []

    async def render(hub, topics):
        reads.append(time.monotonic())
        return {topic: f"update {len(reads)}" for topic in topics}

    hub = LiveHub(config, db_url, TIMEOUTS, {"type": render}, tick_s=TICK_S, refresh_s={"type": 3600})
    hub.start()
    queues = [hub.subscribe(type_topic("testms", "pipe")) for _ in range(pages)]
    got = [[] for _ in queues]

    async def page(index, queue):
        while True:
            got[index].append(await queue.get())

    readers = [asyncio.create_task(page(i, q)) for i, q in enumerate(queues)]
    try:
        deadline = time.monotonic() + 10
        while not reads:  # the first read, of what happened while nobody listened
            assert time.monotonic() < deadline, "the hub never read"
            await asyncio.sleep(0.05)
        sender = await async_connection(db_url, application_name="storm", timeouts=TIMEOUTS)
        started, sent = time.monotonic(), 0
        before = len(reads)
        while time.monotonic() - started < STORM_S:
            await sender.execute("SELECT pg_notify(%s, '')", (sql.channel("testms", "pipe", 1 + sent % 3),))
            sent += 1
        await asyncio.sleep(2 * TICK_S)  # the last tick of the storm
        during = len(reads) - before
        await asyncio.sleep(5 * TICK_S)
        quiet = len(reads) - before - during
        await sender.close()
        assert sent > 500, f"only {sent} notifications sent: not a storm"
        return during, quiet, got
    finally:
        for reader in readers:
            reader.cancel()
        await hub.stop()


def test_a_storm_of_notifications_is_read_once_per_tick_whatever_the_open_pages(db_url, synced):
    one_during, one_quiet, _ = run(_storm(db_url, synced, 1))
    many_during, many_quiet, got = run(_storm(db_url, synced, PAGES))
    most = STORM_S / TICK_S + 3  # a read per tick, and the ticks at the storm's edges
    assert 1 <= one_during <= most and 1 <= many_during <= most, (one_during, many_during)
    assert one_quiet == many_quiet == 0  # nothing notified, nothing read
    # Every page got the same newest rendering, and at most one per tick.
    assert len({pages[-1] for pages in got}) == 1
    assert all(len(pages) <= many_during + 1 for pages in got)


def test_no_page_open_holds_no_connection_and_reads_nothing(db_url, synced):
    async def check():
        async def render(hub, topics):
            raise AssertionError("read with no page open")
        hub = LiveHub(synced, db_url, TIMEOUTS, {"type": render}, tick_s=TICK_S)
        hub.start()
        await asyncio.sleep(5 * TICK_S)
        assert hub.conn is None
        queue = hub.subscribe(type_topic("testms", "pipe"))
        hub.renderers["type"] = _echo
        update = await asyncio.wait_for(queue.get(), 10)
        assert update == "read"
        assert hub.conn is not None
        hub.unsubscribe(type_topic("testms", "pipe"), queue)
        deadline = time.monotonic() + 10
        while hub.conn is not None:  # the last page gone, the listener lets its connection go
            assert time.monotonic() < deadline, "the listener kept its connection"
            await asyncio.sleep(0.05)
        await hub.stop()
    run(check())


async def _echo(hub, topics):
    return {topic: "read" for topic in topics}


def test_each_open_ticket_is_counted_once_as_held_parked_due_or_waiting(db_url, conn, synced):
    config = synced
    due = [create_ticket(conn, config, "testms", "pipe", {"n": n}) for n in range(4)]
    error = create_ticket(conn, config, "botfleet", "error", {"reason": "broken"})
    conn.execute("UPDATE tickets SET lease_owner = 'bot', lease_expires_at = statement_timestamp() + interval '1 hour' "
                 "WHERE id = %s", (due[0],))
    conn.execute("UPDATE tickets SET waiting_for = %s, due_at = 'infinity' WHERE id = %s", (error, due[1]))
    conn.execute("UPDATE tickets SET due_at = botfleet_now() + interval '1 hour' WHERE id = %s", (due[2],))
    conn.execute("UPDATE tickets SET closed_at = botfleet_now() WHERE id = %s",
                 (create_ticket(conn, config, "testms", "pipe", {}),))
    kind = config.types[("testms", "pipe")]

    async def read():
        aconn = await async_connection(db_url, application_name="test", timeouts=TIMEOUTS)
        try:
            return await read_graphs(aconn, config, [kind])
        finally:
            await aconn.close()
    counts, health = run(read())
    assert counts[kind.key] == {1: StateCounts(open=4, due=1, held=1, waiting=1, parked=1)}
    assert health[kind.key] == {code: None for code in kind.states}  # no watchdog has judged the bots

