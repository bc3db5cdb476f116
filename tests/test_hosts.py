"""Two hosts of one fleet on one machine: two supervisords with their own BOTFLEET_HOST, var folders and
watchdog ports, the bots split between them by `hosts:` in fleet.yaml."""

import urllib.request

import pytest

from common.tickets.create import create_ticket
from common.tickets.read import get_ticket
from tests.conftest import Fleet, SupervisedFleet, free_port, stays_true, wait_until

# Faults of processes (kills, stops, supervisord): their SQL is the same on every server, so CI runs
# them against the first server only.
pytestmark = [pytest.mark.processes, pytest.mark.process_faults]

ON_A = {"testms-pipe-1-first", "testms-pipe-3-third", "testms-pipe-4-done", "testms-pipe-5-dropped"}
ON_B = {"testms-pipe-2-second"}


def hosts_section(port_a, port_b):
    return (f"hosts:\n"
            f"  host-a:\n    bots: [testms-pipe-1-*, testms-pipe-3-*, testms-pipe-4-*, testms-pipe-5-*]\n"
            f"    watchdog_listen: 127.0.0.1:{port_a}\n"
            f"  host-b:\n    bots: [testms-pipe-2-*]\n    watchdog_listen: 127.0.0.1:{port_b}\n")


def verdicts(conn):
    return {(r["bot_name"], r["host"]): r["health"]
            for r in conn.execute("SELECT bot_name, host, health FROM bot_health").fetchall()}


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_two_hosts_run_their_own_bots_keep_health_per_host_and_check_names_the_host_whose_watchdog_stopped(
        tmp_path, db_url, conn):
    port_a, port_b = free_port(), free_port()
    host_a = SupervisedFleet(tmp_path / "project", db_url, host="host-a", fleet_extra=hosts_section(port_a, port_b))
    host_b = Fleet(tmp_path / "project", db_url, host="host-b")  # the same config folder, another host
    try:
        host_a.start()
        host_b.start()
        # Each supervisord runs its host's bots and its own watchdog, nothing else.
        assert set(host_a.states()) == ON_A | {"watchdog"}
        assert set(host_b.states()) == ON_B | {"watchdog"}

        # A ticket crosses hosts: states 1 and 3 are worked on host-a, state 2 on host-b.
        ticket_id = create_ticket(conn, host_a.config, "testms", "pipe", {}, creator="test")
        wait_until(lambda: get_ticket(conn, ticket_id).state == 4, 30, "the ticket to cross both hosts")

        expected = {(bot, "host-a"): "healthy" for bot in ON_A} | {(bot, "host-b"): "healthy" for bot in ON_B}
        wait_until(lambda: verdicts(conn) == expected, 30, lambda: f"one healthy verdict per bot, from its host: "
                                                                  f"{verdicts(conn)}")
        # No host judges a bot it does not run: the verdicts hold still over many checks of both watchdogs.
        stays_true(lambda: verdicts(conn) == expected, 3, lambda: f"verdicts: {verdicts(conn)}")
        code, line = host_a.check()
        assert code == 0 and line.startswith("OK: ") and "on host-a, host-b; 5 bot(s) healthy" in line, line

        # Either watchdog exports every host's view.
        text = scrape(port_b)
        assert 'botfleet_bot_host_up{bot="testms-pipe-2-second",host="host-b",metaservice="testms",' \
               'state="2",ticket_type="pipe"} 1.0' in text
        assert 'botfleet_watchdog_host_last_check_timestamp_seconds{host="host-a"}' in text

        # host-b's watchdog stops: `check` blames host-b, and only host-b.
        host_b.rpc.stopProcess("watchdog")
        wait_until(lambda: host_a.check()[0] == 2, 30, "check to fail once host-b's watchdog is stale")
        code, line = host_a.check()
        assert "host-b: watchdog heartbeat is stale" in line and "host-a" not in line, line
        # The fleet's last-check metric is host-b's, the oldest; host-a's own keeps moving.
        text = scrape(port_a)
        fleet_check = next(float(line.split()[-1]) for line in text.splitlines()
                           if line.startswith("botfleet_watchdog_last_check_timestamp_seconds "))
        host_b_check = next(float(line.split()[-1]) for line in text.splitlines()
                            if line.startswith('botfleet_watchdog_host_last_check_timestamp_seconds{host="host-b"}'))
        assert fleet_check == host_b_check
    finally:
        host_b.stop()
        host_a.stop()
