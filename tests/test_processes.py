"""The fleet as real processes: bot replicas side by side, the first sweep, and a SIGKILL mid-handler."""

import os
import signal
from pathlib import Path

import pytest

from common.config.load import load
from common.tickets.create import create_ticket, create_tickets
from common.tickets.read import get_events, get_ticket
from tests.conftest import THREE_STATES, registered, wait_until, write_config

pytestmark = pytest.mark.processes

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
    bot = processes.start("flow-three-1-a", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")

    def moved(ids):
        return lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE id = ANY(%s) AND state = 2",
                                    (ids,)).fetchone()["n"] == len(ids)
    wait_until(moved(backlog), 30, "the backlog to move to state 2")
    assert "first sweep: claimed 50 ticket(s)" in Path(bot.log_path).read_text()
    # After the sweep it listens: a new ticket is taken on its notification.
    fresh = create_ticket(conn, types, "flow", "three")
    wait_until(moved([fresh]), 10, "the new ticket to move on its notification")


def test_sigkill_in_the_middle_of_a_handler_loses_and_duplicates_nothing(supervised, conn):
    fleet = supervised(bots={"testms-pipe-2-second": "handler: tests.handlers:slow\n"},
                       bot_defaults={"lease": "2s", "sweep_interval": "1s"}).start()
    # The handler outlasts any stall of the test between seeing it start and killing it.
    ticket_id = create_ticket(conn, fleet.config, "testms", "pipe", {"sleep_s": 5})
    wait_until(lambda: list(fleet.marks.glob(f"*-{ticket_id}-2-start")), 30, "the slow handler to start")
    victim = fleet.info("testms", "testms-pipe-2-second")["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted():
        info = fleet.info("testms", "testms-pipe-2-second")
        return info["statename"] == "RUNNING" and info["pid"] != victim
    wait_until(restarted, 30, "supervisord to restart the killed bot")
    wait_until(lambda: get_ticket(conn, ticket_id).closed_at is not None, 60, "the ticket to complete")

    assert transitions_by_ticket(conn, "testms")[ticket_id] == [(1, 2), (2, 3), (3, 4)]
    assert len(list(fleet.marks.glob(f"*-{ticket_id}-2-start"))) == 2  # run again after the kill, written once
    rescue = [e for e in get_events(conn, ticket_id) if e["kind"] == "claimed"]
    assert rescue and rescue[0]["detail"]["previous_owner"].startswith("testms-pipe-2-second@")
