"""`botfleet status` and the metrics never show an old verdict as a bot's health."""

import contextlib

from common.access.fleet_lock import lock_fleet
from common.fleet import status
from common.store import clock, sql
from common.tickets.create import create_ticket
from watchdog.collector import RESTART_REASONS, FleetCollector

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


def _families(conn):
    return {f.name: f for f in FleetCollector(lambda: contextlib.nullcontext(conn)).collect()}


def test_a_ticket_counts_as_due_until_a_bot_holds_it_and_its_wait_shows_in_metrics(conn, synced):
    """What the backlog alerts read (monitoring/prometheus/alerts.yml)."""
    create_ticket(conn, synced, "testms", "pipe")
    later = create_ticket(conn, synced, "testms", "pipe")
    conn.execute("UPDATE tickets SET due_at = botfleet_now() + interval '1 hour' WHERE id = %s", (later,))
    clock.shift(conn, 600)
    families = _families(conn)
    due = {s.labels["state"]: s.value for s in families["botfleet_tickets_due"].samples}
    oldest = {s.labels["state"]: s.value for s in families["botfleet_tickets_oldest_due_timestamp_seconds"].samples}
    open_ = {s.labels["state"]: s.value for s in families["botfleet_tickets_open"].samples}
    now_s = conn.execute("SELECT extract(epoch FROM botfleet_now())::float8 AS s").fetchone()["s"]
    assert (open_, due) == ({"1": 2}, {"1": 1})
    assert 600 <= now_s - oldest["1"] < 660
    # Held by a bot: its due time is its lease's end, so it is no longer waiting for one.
    conn.execute("UPDATE tickets SET due_at = botfleet_now() + interval '30 seconds'")
    families = _families(conn)
    assert {s.labels["state"]: s.value for s in families["botfleet_tickets_due"].samples} == {"1": 0}
    assert families["botfleet_tickets_oldest_due_timestamp_seconds"].samples == []


def test_every_bot_has_a_restart_count_for_every_reason_from_zero(conn, synced):
    """A counter first exported at 1 would hide its first restart from increase()."""
    conn.execute(sql.RECORD_WATCHDOG_EVENT, {"watchdog": "w", "bot": BOT, "action": "restart", "reason": "crash: died"})
    restarts = {(s.labels["bot"], s.labels["reason"]): s.value
                for s in _families(conn)["botfleet_watchdog_restarts"].samples if s.name.endswith("_total")}
    bots = [row["name"] for row in conn.execute("SELECT name FROM bots").fetchall()]
    assert set(restarts) == {(bot, reason) for bot in bots for reason in RESTART_REASONS}
    assert restarts[(BOT, "crash")] == 1 and sum(restarts.values()) == 1


def test_the_lock_says_since_when_it_is_in_its_state(conn, synced):
    lock_fleet(conn, "maintenance", "ops")
    set_at = conn.execute("SELECT extract(epoch FROM set_at)::float8 AS s FROM fleet_lock").fetchone()["s"]
    families = _families(conn)
    assert [s.value for s in families["botfleet_fleet_lock_since_timestamp_seconds"].samples] == [set_at]
    assert {s.labels["state"]: s.value for s in families["botfleet_fleet_lock"].samples}["ops_only"] == 1
