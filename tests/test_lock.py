"""The fleet's lock and exclusive tickets, with real bot processes and the real API process: a locked fleet
refuses new work over HTTP, answers reads and claims nothing (but for types that run when locked), and
takes up its work when it opens; an exclusive ticket waits for the work in hand, runs alone with the
fleet closed, and hands the lock back to what it was, also when it fails."""

import subprocess
from pathlib import Path

import pytest

from common.config.load import load
from common.tickets.create import create_ticket
from tests.conftest import BOTFLEET, THREE_STATES, stays_true, wait_until
from tests.harness import child_env
from tests.test_api import error_of, serve_api

pytestmark = pytest.mark.processes

TYPES = {"testms/work": THREE_STATES, "testms/ops": THREE_STATES + "runs_when_locked: true\n",
         "testms/backup": THREE_STATES + "exclusive: true\n"}
BOTS = {"testms-work-1-a": "handler: tests.handlers:slow\n", "testms-backup-1-a": "handler: tests.handlers:slow\n",
        "testms-backup-2-b": "handler: tests.handlers:flaky\n"}


@pytest.fixture
def fleet(tmp_path, db_url, conn, processes):
    api = serve_api(tmp_path, db_url, conn, processes, types=TYPES, bots=BOTS)
    api.marks = tmp_path / "marks"
    api.marks.mkdir()
    for name in load(api.config_dir).bots:
        processes.start(name, api.config_dir, db_url, {"BOTFLEET_TEST_MARKS": str(api.marks)})
    api.db_url = db_url
    return api


def lock_state(conn) -> dict:
    return conn.execute("SELECT state, reason, holder_ticket, before->>'state' AS returns_to FROM fleet_lock").fetchone()


def closed(conn, ticket_id) -> bool:
    return conn.execute("SELECT closed_at IS NOT NULL AS c FROM tickets WHERE id = %s", (ticket_id,)).fetchone()["c"]


def starts(marks: Path) -> dict:
    """ticket id -> when (epoch seconds) its handler first started in state 1, from the handlers' marks."""
    found = {}
    for mark in sorted(marks.iterdir()):
        at, _pid, ticket_id, state, what = mark.name.split("-")
        if what == "start" and state == "1":
            found.setdefault(int(ticket_id), float(at))
    return found


def finished_state_1_at(conn, ticket_id) -> float:
    """When the ticket left state 1 (infinity: it has not yet)."""
    row = conn.execute("SELECT extract(epoch FROM at)::float8 AS t FROM ticket_events "
                       "WHERE ticket_id = %s AND from_state = 1 AND to_state = 2", (ticket_id,)).fetchone()
    return row["t"] if row else float("inf")


def test_a_locked_fleet_refuses_new_work_answers_reads_and_resumes_when_opened(fleet, conn):
    admin, reader = fleet.client(), fleet.client("reader")
    error_of(reader.put("/lock", json={"reason": "upgrade"}), 403)
    response = admin.put("/lock", json={"reason": "database upgrade"})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "ops_only" and response.json()["set_by"] == "api:ci"

    refused = error_of(admin.post("/tickets", json={"metaservice": "testms", "type": "work"}), 503)
    assert (refused["code"], refused["state"], refused["reason"]) == ("fleet_locked", "ops_only", "database upgrade")
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0
    assert reader.get("/tickets").status_code == 200
    assert reader.get("/lock").json()["reason"] == "database upgrade"

    # Work that reaches the fleet some other way (a bot's handler, the CLI) waits; a type that runs when
    # locked goes on.
    config = load(fleet.config_dir)
    work = create_ticket(conn, config, "testms", "work")
    ops = create_ticket(conn, config, "testms", "ops")
    wait_until(lambda: closed(conn, ops), 30, "the runs_when_locked ticket to go through")
    stays_true(lambda: not closed(conn, work) and not starts(fleet.marks), 2.5, "work to wait")

    shown = subprocess.run([*BOTFLEET, "--config", str(fleet.config_dir), "lock"], env=child_env(fleet.db_url),
                           capture_output=True, text=True)
    assert "ops_only (database upgrade; by api:ci)" in shown.stdout, shown
    response = admin.delete("/lock")
    assert response.status_code == 200 and response.json()["state"] == "open", response.text
    wait_until(lambda: closed(conn, work), 30, "the waiting ticket to go through once the fleet opened")
    assert admin.post("/tickets", json={"metaservice": "testms", "type": "work"}).status_code == 201


def test_an_exclusive_ticket_waits_for_the_work_in_hand_runs_alone_and_hands_the_lock_back(fleet, conn):
    admin = fleet.client()
    in_hand = [admin.post("/tickets", json={"metaservice": "testms", "type": "work",
                                            "payload": {"sleep_s": 2}}).json()["id"] for _ in range(3)]
    wait_until(lambda: set(in_hand) <= set(starts(fleet.marks)), 30, "the work in hand to start")
    backup = admin.post("/tickets", json={"metaservice": "testms", "type": "backup",
                                          "payload": {"sleep_s": 1}}).json()["id"]
    wait_until(lambda: lock_state(conn)["holder_ticket"] == backup, 15, "the exclusive ticket to close the fleet")
    assert lock_state(conn)["state"] == "closed" and lock_state(conn)["returns_to"] == "open"

    # Closed: nothing new starts, creates are refused, reads answer.
    refused = error_of(admin.post("/tickets", json={"metaservice": "testms", "type": "work"}), 503)
    assert refused["state"] == "closed" and f"exclusive ticket {backup}" in refused["reason"]
    assert fleet.client("reader").get(f"/tickets/{backup}").status_code == 200
    later = create_ticket(conn, load(fleet.config_dir), "testms", "work")

    wait_until(lambda: closed(conn, backup), 30, "the exclusive ticket to finish")
    started = starts(fleet.marks)
    assert started[backup] >= max(finished_state_1_at(conn, t) for t in in_hand), "it started before the work in hand ended"
    backup_done = conn.execute("SELECT extract(epoch FROM closed_at)::float8 AS t FROM tickets WHERE id = %s",
                               (backup,)).fetchone()["t"]
    wait_until(lambda: closed(conn, later), 30, "the work held back to go through after it")
    assert starts(fleet.marks)[later] >= backup_done, "work started while the exclusive ticket ran"
    assert lock_state(conn) == {"state": "open", "reason": None, "holder_ticket": None, "returns_to": None}

    # A failing exclusive ticket (its second state raises until it parks on an error ticket) hands the
    # lock back too, to the admin's lock set while it ran.
    failing = admin.post("/tickets", json={"metaservice": "testms", "type": "backup",
                                           "payload": {"fail_times": 99}}).json()["id"]
    wait_until(lambda: lock_state(conn)["holder_ticket"] == failing, 15, "the failing ticket to close the fleet")
    assert admin.put("/lock", json={"reason": "after the backup"}).json()["state"] == "closed"
    assert lock_state(conn)["returns_to"] == "ops_only"
    wait_until(lambda: lock_state(conn)["state"] == "ops_only", 30, "the lock to go back after the failure")
    assert conn.execute("SELECT waiting_for IS NOT NULL AS w FROM tickets WHERE id = %s", (failing,)).fetchone()["w"]
    assert lock_state(conn)["reason"] == "after the backup"
