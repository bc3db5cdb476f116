"""Several watchdogs: exactly one holds the fleet-wide lease, and another takes it when it lapses."""

from dataclasses import replace

from common.config import load
from tests.conftest import wait_until, write_config
from watchdog.run import Watchdog


def make_watchdog(tmp_path, db_url, name, lease_s):
    cfg = load(write_config(tmp_path / "config"))
    cfg = replace(cfg, watchdog=replace(cfg.watchdog, lease_s=lease_s))
    watchdog = Watchdog(cfg, db_url, tmp_path / "no-supervisord.sock")
    watchdog.name = name
    return watchdog


def test_one_leader_at_a_time_and_takeover_after_the_lease_lapses(tmp_path, db_url, synced, conn):
    first = make_watchdog(tmp_path, db_url, "host-a:1", lease_s=1)
    second = make_watchdog(tmp_path, db_url, "host-b:2", lease_s=1)
    try:
        first.check_once()
        second.check_once()
        assert (first.is_leader, second.is_leader) == (True, False)
        first.check_once()  # renewing keeps it
        second.check_once()
        assert (first.is_leader, second.is_leader) == (True, False)

        # The first watchdog stops checking (dead host): after its lease lapses the second takes over.
        def second_leads():
            second.check_once()
            return second.is_leader
        wait_until(second_leads, 10, "the second watchdog to take the lapsed lease")
        first.check_once()
        assert first.is_leader is False
        # Without supervisord the bots are judged by heartbeats alone; none heartbeat here.
        row = conn.execute("SELECT health FROM bots WHERE name = 'testms-pipe-1-first'").fetchone()
        assert row["health"] == "unknown"
        assert {r["name"] for r in conn.execute("SELECT name FROM watchdogs").fetchall()} == {"host-a:1", "host-b:2"}
    finally:
        first._drop_connection()
        second._drop_connection()
