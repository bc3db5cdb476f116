"""A bot that fails on its own (its threads all stuck, a fault of ours) finishes what it can, deregisters and
exits non-zero, so that supervisord starts it afresh; and a bot's one connection, lost, comes back with its
LISTEN in place."""

import threading

from bots.runtime import EX_SOFTWARE, BotRuntime
from common.tickets.create import create_ticket
from tests.conftest import registered, wait_until
from tests.handlers import advance


def test_a_bot_that_fails_drains_and_exits_non_zero(db_url, conn, synced):
    runtime = BotRuntime(synced, synced.bot("testms-pipe-1-first"), db_url, handler=advance)
    codes = []
    thread = threading.Thread(target=lambda: codes.append(runtime.run()), daemon=True)
    thread.start()
    wait_until(registered(conn, 1), 10, "the bot to register")
    runtime.fail("boom")
    thread.join(15)
    assert codes == [EX_SOFTWARE]
    assert conn.execute("SELECT stopped_at FROM bot_processes").fetchone()["stopped_at"] is not None


def test_a_bot_hears_notifications_on_its_one_connection_after_losing_it(db_url, conn, synced):
    spec = synced.bot("testms-pipe-1-first")
    runtime = BotRuntime(synced, spec, db_url, handler=advance)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        wait_until(registered(conn, 1), 10, "the bot to register")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                     (spec.name,))
        wait_until(lambda: conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
                                        (spec.name,)).fetchone()["n"] == 1, 15, "the bot to reconnect")
        # The reconnect's sweep has run once the bot counts turns again; a ticket created now moves only if
        # the notification is heard (sweep_interval is far off).
        turns = runtime.heartbeat.loop_turns
        wait_until(lambda: runtime.heartbeat.loop_turns > turns + 1, 10, "the loop to turn after the reconnect")
        ticket_id = create_ticket(conn, synced, "testms", "pipe")
        wait_until(lambda: conn.execute("SELECT state FROM tickets WHERE id = %s", (ticket_id,)).fetchone()["state"] == 2,
                   5, "the ticket to move on the notification")
    finally:
        runtime.stop()
        thread.join(15)
