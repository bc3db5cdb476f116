"""A bot's listener that dies of anything but a lost connection says so, and the bot then exits non-zero
so that supervisord restarts it: it never falls back to sweeps alone without anybody knowing."""

import threading

from bots.listener import Listener
from bots.runtime import EX_SOFTWARE, BotRuntime
from common.store.connect import connect
from tests.conftest import registered, wait_until
from tests.handlers import advance

CHANNEL = "bf.testms.pipe.1"


def test_a_listener_that_dies_reports_why(db_url):
    failures = []
    stopping = threading.Event()

    def wake(payload=""):
        raise RuntimeError("boom")
    listener = Listener(db_url, (CHANNEL,), "test:listen", wake, stopping, on_failure=failures.append)
    thread = listener.start()
    wait_until(listener.listening.is_set, 10, "the listener to LISTEN")
    with connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
    wait_until(lambda: failures, 10, "the listener to report its death")
    assert repr(failures[0]) == "RuntimeError('boom')"
    thread.join(5)
    assert not thread.is_alive()
    stopping.set()


def test_a_bot_whose_listener_died_drains_and_exits_non_zero(db_url, conn, synced):
    runtime = BotRuntime(synced, synced.bot("testms-pipe-1-first"), db_url, handler=advance)
    codes = []
    thread = threading.Thread(target=lambda: codes.append(runtime.run()), daemon=True)
    thread.start()
    wait_until(registered(conn, 1), 10, "the bot to register")
    runtime.listener.on_failure(RuntimeError("boom"))
    thread.join(15)
    assert codes == [EX_SOFTWARE]
    assert conn.execute("SELECT stopped_at FROM bot_processes").fetchone()["stopped_at"] is not None
