"""`botfleet status` and the metrics never show an old verdict as a bot's health."""

import contextlib

from common.fleet import status
from common.store import clock
from watchdog.collector import FleetCollector

BOT = "testms-pipe-1-first"


def test_a_verdict_older_than_stale_after_is_shown_stale_in_status_and_not_up_in_metrics(conn, synced):
    conn.execute("INSERT INTO bot_health (bot_name, host, health, reason, at) "
                 "SELECT name, 'web1', 'healthy', 'fine', botfleet_now() FROM bots")
    conn.execute("INSERT INTO watchdogs (name, host, pid) VALUES ('web1:1', 'web1', 1)")

    def shown():
        bots = {b["name"]: b for b in status.collect(conn, synced)["bots"]}
        families = {f.name: f for f in FleetCollector(lambda: contextlib.nullcontext(conn), stale_after_s=synced.watchdog.stale_after_s)
                    .collect()}
        up = {s.labels["bot"]: s.value for s in families["botfleet_bot_up"].samples}
        return bots[BOT]["health"], up[BOT]

    assert shown() == ("healthy", 1)
    # A verdict's age is real time: a shift of business time does not make it stale...
    clock.shift(conn, 86400)
    assert shown() == ("healthy", 1)
    # ...but a watchdog that has not judged for longer than stale_after has.
    conn.execute("UPDATE bot_health SET at = statement_timestamp() - %s * interval '1 second'",
                 (synced.watchdog.stale_after_s + 1,))
    health, up = shown()
    assert (health, up) == ("stale", 0)
