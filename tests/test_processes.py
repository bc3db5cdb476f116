"""The fleet as real processes: bot replicas side by side, the first sweep, and a SIGKILL mid-handler."""

import os
import signal
import time
from pathlib import Path

import pytest

from common.config.load import load
from common.config.names import hostname
from common.tickets.create import create_ticket, create_tickets
from common.tickets.read import get_events, get_ticket
from tests.conftest import THREE_STATES, registered, wait_until, write_config

# Faults of processes (kills, stops, supervisord): their SQL is the same on every server, so CI runs
# them against the first server only.
pytestmark = [pytest.mark.processes, pytest.mark.process_faults]

def transitions_by_ticket(conn, metaservice):
    rows = conn.execute("""
        SELECT e.ticket_id, e.from_state, e.to_state FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
        WHERE t.metaservice = %s AND e.kind = 'transitioned' ORDER BY e.id""", (metaservice,)).fetchall()
    result = {}
    for row in rows:
        result.setdefault(row["ticket_id"], []).append((row["from_state"], row["to_state"]))
    return result


def test_a_thousand_tickets_through_two_replicas_per_bot(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", types={"flow/three": THREE_STATES},
                          bot_defaults={"threads": 4, "batch_size": 32})
    cfg = load(folder)
    for name in cfg.bots:
        for _ in range(2):
            processes.start(name, folder, db_url)
    wait_until(registered(conn, 6), 30, "6 bot processes to register")
    ids = create_tickets(conn, cfg, "flow", "three", [{"n": n} for n in range(1000)])

    def all_closed():
        row = conn.execute("SELECT count(*) AS n FROM tickets WHERE closed_at IS NOT NULL AND state = 3").fetchone()
        return row["n"] == 1000
    wait_until(all_closed, 120, "all 1,000 tickets to reach state 3")

    history = transitions_by_ticket(conn, "flow")
    assert sorted(history) == sorted(ids)
    duplicated = {tid: moves for tid, moves in history.items() if moves != [(1, 2), (2, 3)]}
    assert duplicated == {}
    assert all(proc.poll() is None for proc in processes.procs), "a bot process died"


def test_bot_started_late_processes_the_backlog_in_its_first_sweep(tmp_path, db_url, conn, processes):
    # The periodic sweep is an hour away and nothing notifies about the backlog after the bot starts:
    # only the start-up sweep can pick it up.
    folder = write_config(tmp_path / "config", types={"flow/three": THREE_STATES},
                          bot_defaults={"sweep_interval": "1h", "batch_size": 64})
    cfg = load(folder)
    types = cfg
    backlog = create_tickets(conn, types, "flow", "three", [{} for _ in range(50)])
    processes.start("flow-three-1-a", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")

    def moved(ids):
        return lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE id = ANY(%s) AND state = 2",
                                    (ids,)).fetchone()["n"] == len(ids)
    wait_until(moved(backlog), 30, "the backlog to move to state 2")
    # After the sweep it listens: a new ticket is taken on its notification.
    fresh = create_ticket(conn, types, "flow", "three")
    wait_until(moved([fresh]), 10, "the new ticket to move on its notification")


def state_of(conn, ticket_id):
    return get_ticket(conn, ticket_id).state


def kinds(conn, ticket_id):
    return [event["kind"] for event in get_events(conn, ticket_id)]


def start_marks(marks: Path, ticket_id, state) -> list[float]:
    """When each handler run of a ticket in a state started (tests.handlers marks), in order."""
    return sorted(float(path.name.split("-")[0]) for path in marks.glob(f"*-{ticket_id}-{state}-start"))


def test_sigkill_in_the_middle_of_a_handler_loses_and_duplicates_nothing(supervised, conn):
    # A lease far longer than the test: only the dead owner's successor can free the ticket in time.
    fleet = supervised(bots={"testms-pipe-2-second": "handler: tests.handlers:slow\n"},
                       bot_defaults={"lease": "60s", "sweep_interval": "1s"}).start()
    # The handler outlasts any stall of the test between seeing it start and killing it.
    ticket_id = create_ticket(conn, fleet.config, "testms", "pipe", {"sleep_s": 5})
    wait_until(lambda: list(fleet.marks.glob(f"*-{ticket_id}-2-start")), 30, "the slow handler to start")
    victim = fleet.info("testms", "testms-pipe-2-second")["pid"]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)

    def restarted():
        info = fleet.info("testms", "testms-pipe-2-second")
        return info["statename"] == "RUNNING" and info["pid"] != victim
    wait_until(restarted, 30, "supervisord to restart the killed bot")
    wait_until(lambda: get_ticket(conn, ticket_id).closed_at is not None, 60, "the ticket to complete")

    assert transitions_by_ticket(conn, "testms")[ticket_id] == [(1, 2), (2, 3), (3, 4)]
    starts = start_marks(fleet.marks, ticket_id, 2)
    assert len(starts) == 2  # run again after the kill, written once
    # supervisord restarts the bot at once; its successor frees the ticket as it registers.
    assert starts[1] - killed_at < 5, f"rescued {starts[1] - killed_at:.1f}s after the kill"
    rescue = [e for e in get_events(conn, ticket_id) if e["kind"] == "claimed"]
    assert rescue and rescue[0]["detail"]["previous_owner"].startswith(f"testms-pipe-2-second@{hostname()}:{victim}:")
    # The watchdog counts the restart it did not make, and the dead registration is gone at once.
    wait_until(lambda: conn.execute("SELECT reason FROM watchdog_events WHERE bot = 'testms-pipe-2-second' "
                                    "AND action = 'restart' AND reason LIKE 'crash:%'").fetchall(), 10,
               "the watchdog to count supervisord's restart of the killed bot")
    assert conn.execute("SELECT stopped_at IS NOT NULL AS retired FROM bot_processes WHERE pid = %s",
                        (victim,)).fetchone()["retired"]


def test_a_silent_owners_tickets_are_freed_by_its_peers_and_a_slow_live_owner_keeps_its_own(
        tmp_path, db_url, conn, processes):
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"},
                          bot_defaults={"lease": "60s", "threads": 1, "batch_size": 1})
    env = {"BOTFLEET_TEST_MARKS": str(marks)}
    first = processes.start("testms-pipe-1-first", folder, db_url, env)
    wait_until(registered(conn, 1), 30, "the first bot to register")
    # Slow but alive: it heartbeats through a handler much longer than the hung threshold (1.5 s).
    slow = create_ticket(conn, load(folder), "testms", "pipe", {"sleep_s": 4})
    wait_until(lambda: start_marks(marks, slow, 1), 10, "the slow handler to start")
    second = processes.start("testms-pipe-1-first", folder, db_url, env)
    wait_until(registered(conn, 2), 30, "the second bot to register")
    wait_until(lambda: state_of(conn, slow) == 2, 20, "the slow ticket to move on")
    assert len(start_marks(marks, slow, 1)) == 1 and "claimed" not in kinds(conn, slow)

    # Killed without a successor (no supervisord here): its peer frees its ticket once it is silent.
    stuck = create_ticket(conn, load(folder), "testms", "pipe", {"sleep_s": 30})
    wait_until(lambda: start_marks(marks, stuck, 1), 10, "a handler to start on the ticket")
    holder = conn.execute("SELECT lease_owner FROM tickets WHERE id = %s", (stuck,)).fetchone()["lease_owner"]
    victim = next(p for p in (first, second) if f":{p.pid}:" in holder)
    killed_at = time.time()
    victim.kill()
    conn.execute("UPDATE tickets SET payload = '{\"sleep_s\": 0}' WHERE id = %s", (stuck,))  # the rerun is quick
    wait_until(lambda: state_of(conn, stuck) == 2, 20, "the peer to take the dead process's ticket")
    rescued_s = start_marks(marks, stuck, 1)[1] - killed_at
    assert rescued_s < 6, f"rescued {rescued_s:.1f}s after the kill (hung threshold 1.5 s, lease 60 s)"
    claimed = [e for e in get_events(conn, stuck) if e["kind"] == "claimed"]
    assert [e["detail"]["previous_owner"] for e in claimed] == [holder]
