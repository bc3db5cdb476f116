"""Several watchdogs: exactly one holds the fleet-wide lease, and another takes it when it lapses."""

from dataclasses import replace

from common.config.load import load
from tests.conftest import write_config
from watchdog.run import Watchdog


def make_watchdog(tmp_path, db_url, name, lease_s):
    cfg = load(write_config(tmp_path / "config"))
    cfg = replace(cfg, watchdog=replace(cfg.watchdog, lease_s=lease_s))
    watchdog = Watchdog(cfg, db_url, tmp_path / "no-supervisord.sock")
    watchdog.name = name
    watchdog.host = name.partition(":")[0]
    return watchdog


def test_one_leader_at_a_time_and_takeover_after_the_lease_lapses(tmp_path, db_url, synced, conn):
    # A lease long enough that no pause of a loaded machine lets it lapse between two checks;
    # the test makes it lapse itself.
    first = make_watchdog(tmp_path, db_url, "host-a:1", lease_s=60)
    second = make_watchdog(tmp_path, db_url, "host-b:2", lease_s=60)
    try:
        first.check_once()
        second.check_once()
        assert (first.is_leader, second.is_leader) == (True, False)
        first.check_once()  # renewing keeps it
        second.check_once()
        assert (first.is_leader, second.is_leader) == (True, False)

        # The first watchdog stops checking (dead host) until its lease lapses: the second takes over.
        conn.execute("UPDATE fleet_leases SET expires_at = now() - interval '1 second' WHERE holder = 'host-a:1'")
        second.check_once()
        assert second.is_leader is True
        first.check_once()
        assert first.is_leader is False
        # Without supervisord the bots are judged by heartbeats alone; none heartbeat here.
        rows = conn.execute("SELECT host, health FROM bot_health WHERE bot_name = 'testms-pipe-1-first'").fetchall()
        assert {(r["host"], r["health"]) for r in rows} == {("host-a", "unknown"), ("host-b", "unknown")}
        assert {r["name"] for r in conn.execute("SELECT name FROM watchdogs").fetchall()} == {"host-a:1", "host-b:2"}
    finally:
        first._drop_connection()
        second._drop_connection()
