"""`botfleet up` on one host of a fleet that runs on several (issue 19): it opens the fleet's lock only on a first
start of the whole fleet, never while other hosts' processes are alive; and two hosts upgrading the schema at once
take turns instead of racing."""

import os
import subprocess
import sys

import psycopg
import pytest

from common.config.paths import FleetPaths
from common.fleet import supervisor
from tests.conftest import THREE_STATES, scratch_database, write_config
from tests.harness import BOTFLEET, ROOT, free_port

pytestmark = [pytest.mark.processes]

HOSTS = ("host-a", "host-b")


def hosts_section(port_a, port_b):
    return (f"hosts:\n"
            f"  host-a:\n    bots: [updown-three-1-*, updown-three-3-*]\n    watchdog_listen: 127.0.0.1:{port_a}\n"
            f"  host-b:\n    bots: [updown-three-2-*]\n    watchdog_listen: 127.0.0.1:{port_b}\n")


@pytest.fixture
def two_hosts(tmp_path, db_url):
    """One config folder, two hosts of it on this machine (each its BOTFLEET_HOST and var folder), one database;
    botfleet(host, *args) runs the CLI as that host. Every host is brought down at the end."""
    write_config(tmp_path / "config", types={"updown/three": THREE_STATES},
                 fleet_extra=hosts_section(free_port(), free_port()))
    base = {k: v for k, v in os.environ.items() if not k.startswith("BOTFLEET_") and k != "DATABASE_URL"}

    def env(host):
        return {**base, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "BOTFLEET_HOST": host,
                "BOTFLEET_VAR": str(tmp_path / f"var-{host}")}

    def botfleet(host, *args):
        return subprocess.run([*BOTFLEET, "--config", str(tmp_path / "config"), *args], cwd=ROOT, env=env(host),
                              capture_output=True, text=True, timeout=180)
    yield botfleet
    for host in HOSTS:
        botfleet(host, "down")
        assert supervisor.process_states(FleetPaths(tmp_path, tmp_path / f"var-{host}").supervisor_socket) is None


def lock_row(conn):
    return conn.execute("SELECT state, reason, holder_ticket FROM fleet_lock").fetchone()


def test_up_on_a_host_joining_a_running_fleet_leaves_the_lock_and_a_first_start_opens_it(two_hosts, conn):
    botfleet = two_hosts
    up = botfleet("host-a", "up", "--daemon")
    assert up.returncode == 0, up.stdout + up.stderr
    # A host waits for its own bots only: host-b has not started yet.
    assert "fleet is ready: OK: " in up.stdout and "on host-a;" in up.stdout, up.stdout
    locked = botfleet("host-a", "lock", "--reason", "restore by hand")
    assert locked.returncode == 0, locked.stdout + locked.stderr

    # host-b joins while host-a runs: the admin's lock stays.
    up = botfleet("host-b", "up", "--daemon")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "fleet lock is ops_only (restore by hand; by cli:" in up.stdout, up.stdout
    assert "left as it is, as other hosts' processes are alive (host-a: updown-three-1-a (pid " in up.stdout, up.stdout
    assert lock_row(conn)["state"] == "ops_only"

    # The whole fleet goes down; its first start after opens the lock, whichever host starts first.
    for host in HOSTS:
        assert botfleet(host, "down").returncode == 0
    up = botfleet("host-b", "up", "--daemon")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "fleet lock was ops_only (restore by hand; by cli:" in up.stdout and "opened by this start" in up.stdout
    assert lock_row(conn)["state"] == "open"


# Each process imports first, then waits for its go on stdin: the two upgrades start within milliseconds.
UPGRADE_ON_GO = ("import sys; from common.store import migrate; print('ready', flush=True); sys.stdin.readline(); "
                 "migrate.upgrade(sys.argv[1])")


def test_two_hosts_upgrading_an_empty_database_at_once_take_turns(server_url):
    with scratch_database(server_url, "botfleet_race") as url:
        upgrades = [subprocess.Popen([sys.executable, "-c", UPGRADE_ON_GO, url], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in HOSTS]
        for proc in upgrades:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        for proc in upgrades:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=120) for proc in upgrades]
        assert [proc.returncode for proc in upgrades] == [0, 0], [err[-1500:] for _, err in results]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
