"""Seed 000's JOBSWEEPER with the real sweeper bot and the real API: each run is a job in /operations,
it clears the jobs past their retention and what purged tickets left behind, and runs again when due."""

import json

import pytest

from common.config.builtin import SWEEP_BOT
from common.store import clock
from tests.conftest import wait_until
from tests.test_api import serve_api
from tests.test_jobs import JOB_TYPE

pytestmark = pytest.mark.processes

GONE = 987654321  # a ticket id that does not exist: what a purge leaves behind points at it


def test_the_jobsweeper_runs_as_a_job_clears_old_jobs_and_leftovers_and_runs_again_when_due(tmp_path, db_url, conn,
                                                                                           processes):
    api = serve_api(tmp_path, db_url, conn, processes, types={"testms/job": JOB_TYPE},
                    fleet_extra="jobs:\n  type: testms/job\njobsweeper:\n  every: 1h\n")
    client = api.client()
    finished = client.post("/job", json={"name": "old"}).json()["id"]
    client.patch(f"/job/{finished}", json={"status": "in_progress"})
    client.patch(f"/job/{finished}", json={"status": "completed"})
    running = client.post("/job", json={"name": "still running"}).json()["id"]
    client.patch(f"/job/{running}", json={"status": "in_progress"})
    conn.execute("INSERT INTO ticket_events (ticket_id, step, kind) VALUES (%s, 1, 'moved')", (GONE,))
    conn.execute("INSERT INTO notifications (user_name, ticket_id, kind, text, email_state) "
                 "VALUES ('bob', %s, 'reminder', 'x', 'none')", (GONE,))
    conn.execute("INSERT INTO webhook_outbox (ticket_id, event_id, metaservice, ticket_type, url, at, state) "
                 "VALUES (%s, 1, 'testms', 'job', 'http://127.0.0.1:9/', botfleet_now(), 'delivered')", (GONE,))
    conn.execute("INSERT INTO idempotency_keys (token_name, key, ticket_id) VALUES ('ci', 'k', %s)", (GONE,))
    conn.execute("INSERT INTO ticket_progress (ticket_id, message) VALUES (%s, 'GENERATION_START')", (GONE,))
    conn.execute("INSERT INTO status_objects (object_name) VALUES ('TASK')")
    for finished_at in ("botfleet_now()", "NULL"):  # finished, and still open: only the first goes
        conn.execute("INSERT INTO status_instances (object_id, timeout_s, deadline_at, finished_at, finish_reason) "
                     f"SELECT id, 60, botfleet_now() + interval '1 minute', {finished_at}, "
                     f"CASE WHEN {finished_at} IS NULL THEN NULL ELSE 'completed' END FROM status_objects")
    clock.shift(conn, 25 * 3600)  # the completed job is past its 24 hours

    processes.start(SWEEP_BOT, api.config_dir, db_url)

    def sweeps():
        return [o for o in client.get("/operations").json() if o["type"] == "botfleet/sweep"]
    wait_until(lambda: [s["status"] for s in sweeps()] == ["succeeded"], 30, "the first sweep to succeed")
    [sweep] = sweeps()
    assert sweep["name"] == "JOBSWEEPER"
    cleared = client.get(f"/tickets/{sweep['id']}").json()["payload"]["cleared"]
    assert cleared == {"jobs": 1, "events": 1, "webhooks": 1, "notifications": 1, "idempotency_keys": 1,
                       "status_instances": 1, "ticket_progress": 1}, cleared
    assert conn.execute("SELECT count(*) AS n FROM status_instances WHERE finished_at IS NULL").fetchone()["n"] == 1
    left = {row["id"] for row in conn.execute("SELECT id FROM tickets WHERE metaservice = 'testms'").fetchall()}
    assert left == {running}, "the sweeper took a running job, or left a finished one"
    for table in ("notifications", "webhook_outbox", "idempotency_keys", "ticket_progress"):
        assert conn.execute(f"SELECT count(*) AS n FROM {table} WHERE ticket_id = %s", (GONE,)).fetchone()["n"] == 0
    log = [entry["entry"] for entry in client.get(sweep["log"]).json()]
    assert log[0].startswith("created in 1 (running)") and any("to 2 (done)" in e for e in log), json.dumps(log)

    clock.shift(conn, 3600)
    wait_until(lambda: len(sweeps()) == 2, 30, "the next sweep an hour later")
