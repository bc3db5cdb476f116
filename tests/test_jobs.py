"""Jobs over HTTP with the real API process: POST /job and PATCH /job/{id} in seed 004's status words,
/operations with statuses derived from the job's state and its log, the jobs of a deleted object removed
but not a running one, and seed 000's retention (24 hours succeeded, 2 weeks failed) by the one clock
with the real final-state bots."""

from datetime import UTC, datetime, timedelta

import pytest

from common.store import clock
from common.tickets.jobs import JOB_WORDS, operation_status
from tests.conftest import wait_until
from tests.test_api import error_of, serve_api

pytestmark = pytest.mark.processes

JOB_TYPE = """\
lifetime: 1h
notification_frequency: 10m
retention: 30d
job: true
states:
  - {code: 1, name: pending}
  - {code: 2, name: working}
  - {code: 3, name: done, final: true, outcome: succeeded}
  - {code: 4, name: failed, final: true, outcome: failed}
transitions: [[1, 2], [2, 3, 4]]
"""
# A job type whose work is done by its own bot, and a submitter that waits for one of its jobs.
TASK_TYPE = JOB_TYPE + "retries: 0\nmax_runtime: 30m\n"
SUBMITTER_TYPE = """\
lifetime: 30d
notification_frequency: 30d
retention: 30d
states:
  - {code: 1, name: waiting}
  - {code: 2, name: told, final: true}
transitions: [[1, 2]]
"""
TYPES = {"testms/job": JOB_TYPE, "testms/task": TASK_TYPE, "testms/submitter": SUBMITTER_TYPE}
TASK_BOTS = {"testms-task-1-pending": "handler: tests.handlers:slow\n", "testms-task-2-working": "handler: tests.handlers:job_work\nhandler_timeout: 1s\n",
             "testms-submitter-1-waiting": "handler: tests.handlers:submit_job\n"}


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    # No bot of a working state runs: the jobs are driven over HTTP, as by a worker outside the fleet.
    api = serve_api(tmp_path, db_url, conn, processes, types=TYPES, fleet_extra="jobs:\n  type: testms/job\n")
    api.db_url = db_url
    return api


@pytest.fixture
def task_api(tmp_path, db_url, conn, processes):
    """/job of testms/task, whose working state has a bot: jobs a submitter's handler waits for."""
    api = serve_api(tmp_path, db_url, conn, processes, types=TYPES, bots=TASK_BOTS,
                    fleet_extra="jobs:\n  type: testms/task\n")
    api.db_url = db_url
    return api


def events(conn, ticket_id) -> int:
    return conn.execute("SELECT count(*) AS n FROM ticket_events WHERE ticket_id = %s", (ticket_id,)).fetchone()["n"]


def new_job(client, **fields) -> dict:
    response = client.post("/job", json={"name": "notify", **fields})
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/job/{response.json()['id']}"
    return response.json()


def status_of(client, job_id) -> str:
    return {o["id"]: o["status"] for o in client.get("/operations").json()}[job_id]


def test_jobs_report_their_status_in_the_seeds_words_and_operations_show_them_with_their_log(api, conn):
    client = api.client()
    job = new_job(client, object_type="workorder", object_id="WO-1", payload={"to": "ann"})
    assert (job["status"], job["state_name"], job["object_id"]) == ("pending", "pending", "WO-1")
    later = datetime.now(UTC) + timedelta(hours=1)
    sleeper = new_job(client, name="nightly", start_after=later.isoformat())
    assert status_of(client, sleeper["id"]) == "sleeping" and status_of(client, job["id"]) == "notstarted"

    before = events(conn, job["id"])
    refused = error_of(client.patch(f"/job/{job['id']}", json={"status": "finished"}), 400)
    assert refused["code"] == "unknown_status" and "'finished'" in refused["message"] and refused["field"] == "status"
    error_of(client.patch(f"/job/{job['id']}", json={"status": "completed"}), 409)  # pending -> done: not a transition
    assert events(conn, job["id"]) == before

    assert client.patch(f"/job/{job['id']}", json={"status": "in_progress"}).json()["status"] == "in_progress"
    assert status_of(client, job["id"]) == "running"
    # A worker that reports the same status twice changes nothing but its payload.
    assert client.patch(f"/job/{job['id']}", json={"status": "in_progress", "payload": {"progress": 50}}).json()[
        "payload"]["progress"] == 50
    done = client.patch(f"/job/{job['id']}", json={"status": "completed"}).json()
    assert done["status"] == "completed" and done["closed_at"] is not None
    assert status_of(client, job["id"]) == "succeeded"

    failing = new_job(client, name="mail")
    client.patch(f"/job/{failing['id']}", json={"status": "in_progress"})
    client.patch(f"/job/{failing['id']}", json={"status": "failed", "payload": {"error": "smtp down"}})
    assert status_of(client, failing["id"]) == "failed"

    by_created = [o["id"] for o in client.get("/operations", params={"sort": "created"}).json()]
    assert by_created == sorted(by_created, reverse=True)
    by_action = client.get("/operations", params={"sort": "last_action"}).json()
    assert by_action[0]["id"] == failing["id"] and by_action[0]["log"] == f"/operations/{failing['id']}/log"
    assert [o["last_action"] for o in by_action] == sorted((o["last_action"] for o in by_action), reverse=True)
    error_of(client.get("/operations", params={"sort": "name"}), 422)

    log = client.get(f"/operations/{job['id']}/log").json()
    assert log[0]["entry"].startswith("created in 1 (pending)")
    assert any("from 1 (pending) to 2 (working)" in entry["entry"] for entry in log)
    assert any("from 2 (working) to 3 (done) (by api:ci)" in entry["entry"] for entry in log)
    assert log[-1]["entry"] == "closed in 3 (done) (by api:ci)"
    error_of(client.get("/operations/999999/log"), 404)
    error_of(client.get("/job/999999"), 404)


def test_the_jobs_of_a_deleted_object_go_but_a_running_one_stays_and_locks_refuse_only_new_jobs(api, conn):
    client = api.client()
    finished, waiting, running = (new_job(client, object_type="workorder", object_id="WO-7") for _ in range(3))
    other = new_job(client, object_type="workorder", object_id="WO-8")
    for job in (finished, running):
        client.patch(f"/job/{job['id']}", json={"status": "in_progress"})
    client.patch(f"/job/{finished['id']}", json={"status": "completed"})

    error_of(api.client("reader").delete("/operations", params={"object_type": "workorder", "object_id": "WO-7"}), 403)
    error_of(client.delete("/operations", params={"object_type": "workorder"}), 422)
    gone = client.delete("/operations", params={"object_type": "workorder", "object_id": "WO-7"}).json()
    assert gone == {"deleted": sorted([finished["id"], waiting["id"]]), "running": [running["id"]]}
    assert events(conn, finished["id"]) == 0
    left = {o["id"] for o in client.get("/operations").json()}
    assert left == {running["id"], other["id"]}

    # Locked: no new job, but running work still reports, and /operations answers.
    client.put("/lock", json={"reason": "backup"})
    refused = error_of(client.post("/job", json={"name": "x"}), 503)
    assert refused["state"] == "ops_only" and refused["reason"] == "backup"
    assert client.patch(f"/job/{running['id']}", json={"status": "completed"}).json()["status"] == "completed"
    assert client.get("/operations").status_code == 200


def test_succeeded_jobs_go_after_24_hours_failed_ones_after_two_weeks_and_open_ones_stay(api, conn, processes):
    for name in ("testms-job-3-done", "testms-job-4-failed"):
        processes.start(name, api.config_dir, api.db_url)
    client = api.client()
    succeeded, failed, running = new_job(client), new_job(client), new_job(client)
    for job in (succeeded, failed, running):
        client.patch(f"/job/{job['id']}", json={"status": "in_progress"})
    client.patch(f"/job/{succeeded['id']}", json={"status": "completed"})
    client.patch(f"/job/{failed['id']}", json={"status": "failed"})

    def ids():
        return {row["id"] for row in conn.execute("SELECT id FROM tickets").fetchall()}

    shifted_at = conn.execute("SELECT statement_timestamp() AS at").fetchone()["at"]
    clock.shift(conn, 23 * 3600)  # wakes the bots' timers at once
    # Heartbeats are real time; one a second after the shift comes after the turn that ran their timers.
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM bot_processes WHERE stopped_at IS NULL "
                                    "AND heartbeat_at > %s + interval '1 second'", (shifted_at,)).fetchone()["n"] >= 2,
               30, "both bots to heartbeat after their timers ran by the shifted clock")
    assert ids() == {succeeded["id"], failed["id"], running["id"]}, "a job went before 24 hours"
    clock.shift(conn, 2 * 3600)
    wait_until(lambda: succeeded["id"] not in ids(), 30, "the succeeded job to go after 24 hours")
    assert events(conn, succeeded["id"]) == 0
    assert ids() == {failed["id"], running["id"]}
    clock.shift(conn, 13 * 86400)
    wait_until(lambda: failed["id"] not in ids(), 30, "the failed job to go after 2 weeks")
    assert ids() == {running["id"]}, "a running job was deleted"


@pytest.mark.parametrize("mode, error", [
    ("raise", "handler failed 1 times; last error: RuntimeError: smtp down"),
    ("overrun", "the handler ran longer than handler_timeout (1s)"),
    ("wait", "it ran longer than its max_runtime (1800s) in state 2"),
])
def test_a_job_whose_handler_fails_for_good_ends_failed_and_its_submitter_is_told(task_api, conn, processes, mode,
                                                                                    error):
    api = task_api
    for name in ("testms-task-1-pending", "testms-task-2-working", "testms-task-4-failed",
                 "testms-submitter-1-waiting"):
        processes.start(name, api.config_dir, api.db_url)
    client = api.client()
    created = client.post("/tickets", json={"metaservice": "testms", "type": "submitter",
                                            "payload": {"job_type": "task", "mode": mode}})
    assert created.status_code == 201, created.text
    submitter = created.json()["id"]

    def job_id():
        row = conn.execute("SELECT id FROM tickets WHERE parent_id = %s", (submitter,)).fetchone()
        return row and row["id"]

    wait_until(job_id, 30, "the submitter to create its job")
    job = job_id()
    if mode == "wait":
        wait_until(lambda: conn.execute("SELECT state, step FROM tickets WHERE id = %s", (job,)).fetchone()["step"] >= 2,
                   30, "the job to start waiting in its working state")
        clock.shift(conn, 2 * 3600)
    wait_until(lambda: conn.execute("SELECT closed_at FROM tickets WHERE id = %s", (submitter,)).fetchone()["closed_at"],
               30, "the submitter to be told how its job ended")
    told = conn.execute("SELECT payload FROM tickets WHERE id = %s", (submitter,)).fetchone()["payload"]
    assert told["woken_by"] == {"id": job, "state": 4}, "the submitter was not told FAILED"
    assert status_of(client, job) == "failed" and client.get(f"/job/{job}").json()["status"] == "failed"
    ticket = conn.execute("SELECT state, closed_at, waiting_for FROM tickets WHERE id = %s", (job,)).fetchone()
    assert ticket["state"] == 4 and ticket["closed_at"] is not None and ticket["waiting_for"] is None
    assert conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = 'botfleet'").fetchone()["n"] == 0, \
        "an error ticket was raised instead"
    log = [entry["entry"] for entry in client.get(f"/operations/{job}/log").json()]
    assert any(error in entry and "to 4 (failed)" in entry for entry in log), log


@pytest.mark.parametrize("facts, status", [
    ({"closed": True, "outcome": "succeeded"}, "succeeded"),
    ({"closed": True, "outcome": "failed"}, "failed"),
    ({"closed": True, "outcome": None}, "failed"),            # closed by hand where it stood
    ({"sleeping": True}, "sleeping"),
    ({}, "notstarted"),
    ({"held": True}, "running"),                                # a bot or worker holds it, still in its first state
    ({"moved_on": True}, "running"),
])
def test_a_jobs_one_status_comes_from_its_state_hold_start_after_and_outcome(facts, status):
    given = {"closed": False, "outcome": None, "sleeping": False, "moved_on": False, "held": False, **facts}
    assert operation_status(**given) == status
    assert set(JOB_WORDS) == {"sleeping", "notstarted", "running", "succeeded", "failed"}
    assert set(JOB_WORDS.values()) == {"pending", "in_progress", "completed", "failed"}


def test_a_held_job_is_in_progress_on_both_routes_and_its_log_says_when_it_started(task_api, conn, processes):
    processes.start("testms-task-1-pending", task_api.config_dir, task_api.db_url)
    client = task_api.client()
    # The bot holds it a minute, still in its first state.
    job = new_job(client, object_type="workorder", object_id="WO-3", payload={"sleep_s": 60})
    wait_until(lambda: conn.execute("SELECT lease_owner FROM tickets WHERE id = %s", (job["id"],)).fetchone()[
        "lease_owner"], 30, "the bot to take the job")
    assert client.get(f"/job/{job['id']}").json()["status"] == "in_progress"
    operation = {o["id"]: o for o in client.get("/operations").json()}[job["id"]]
    assert operation["status"] == "running"
    assert datetime.fromisoformat(operation["last_action"]) > datetime.fromisoformat(job["created_at"])
    log = [entry["entry"] for entry in client.get(f"/operations/{job['id']}/log").json()]
    assert log[-1].startswith("started in 1 (pending) (by testms-task-1-pending"), log
    gone = client.delete("/operations", params={"object_type": "workorder", "object_id": "WO-3"}).json()
    assert gone == {"deleted": [], "running": [job["id"]]}


def test_a_payload_change_starts_nothing_and_an_unstarted_job_can_be_deleted(api, conn):
    client = api.client()
    job = new_job(client, object_type="workorder", object_id="WO-9")
    patched = client.patch(f"/job/{job['id']}", json={"payload": {"to": "ann"}}).json()
    assert patched["status"] == "pending" and status_of(client, job["id"]) == "notstarted"
    assert client.get(f"/job/{job['id']}").json()["status"] == "pending"
    gone = client.delete("/operations", params={"object_type": "workorder", "object_id": "WO-9"}).json()
    assert gone == {"deleted": [job["id"]], "running": []}
    moved = new_job(client, object_type="workorder", object_id="WO-9")
    assert client.patch(f"/job/{moved['id']}", json={"status": "in_progress"}).json()["status"] == "in_progress"
    log = [entry["entry"] for entry in client.get(f"/operations/{moved['id']}/log").json()]
    assert log[-1] == "started in 2 (working) (by api:ci)", log
    assert client.delete("/operations", params={"object_type": "workorder", "object_id": "WO-9"}).json() == {
        "deleted": [], "running": [moved["id"]]}


def test_a_jobs_own_fields_are_not_its_instruction(api, conn):
    client = api.client()
    instruction = {"name": "ann", "object_type": "pump", "object_id": 7}
    job = new_job(client, object_type="workorder", object_id=42, payload=instruction)
    assert (job["name"], job["object_type"], job["object_id"], job["payload"]) == ("notify", "workorder", "42",
                                                                                    instruction)
    # A job whose instruction merely names the object is not the object's job.
    bystander = new_job(client, object_type="invoice", object_id="1", payload={"object_type": "workorder",
                                                                               "object_id": "42"})
    patched = client.patch(f"/job/{job['id']}", json={"payload": {"name": "renamed", "object_id": "43"}}).json()
    assert (patched["name"], patched["object_id"], patched["payload"]["name"]) == ("notify", "42", "renamed")
    assert {o["id"]: o["name"] for o in client.get("/operations").json()}[job["id"]] == "notify"
    gone = client.delete("/operations", params={"object_type": "workorder", "object_id": "42"}).json()
    assert gone == {"deleted": [job["id"]], "running": []}
    assert client.get(f"/job/{bystander['id']}").status_code == 200
    assert error_of(client.post("/job", json={"name": "x", "object_id": True}), 422)["field"].startswith("object_id")


def test_a_status_report_with_a_message_moves_the_job_and_logs_the_message(api, conn):
    client = api.client()
    job = new_job(client)
    moved = client.patch(f"/job/{job['id']}", json={"status": "in_progress", "message": "picked up by w1"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "in_progress"
    assert client.patch(f"/job/{job['id']}", json={"message": "half way"}).status_code == 200
    log = [entry["entry"] for entry in client.get(f"/operations/{job['id']}/log").json()]
    assert any("from 1 (pending) to 2 (working): picked up by w1 (by api:ci)" in entry for entry in log), log
    assert log[-1] == "patched in 2 (working): half way (by api:ci)", log


def test_a_restarted_worker_finds_its_unsettled_jobs(api, conn):
    client = api.client()
    pending, mine, theirs, dead, moved, done = (new_job(client)["id"] for _ in range(6))
    for job_id, owner, live in ((mine, "worker:w1", True), (theirs, "worker:w2", True), (dead, "worker:w3", False)):
        # A hold as /workers/{name}/next takes it: a lease to the worker, live or lapsed.
        conn.execute("UPDATE tickets SET lease_owner = %s, lease_expires_at = statement_timestamp() + "
                     "CASE WHEN %s THEN interval '1 hour' ELSE interval '-1 second' END WHERE id = %s",
                     (owner, live, job_id))
    for job_id in (moved, done):
        client.patch(f"/job/{job_id}", json={"status": "in_progress"})
    client.patch(f"/job/{done}", json={"status": "completed"})
    found = client.get("/job", params={"unsettled": "true", "worker": "w1"})
    assert found.status_code == 200, found.text
    assert [job["id"] for job in found.json()] == [pending, mine, dead]
    assert {job["id"] for job in client.get("/job").json()} == {pending, mine, theirs, dead, moved}
    refused = error_of(client.get("/job", params={"unsettled": "true", "worker": "w1/x"}), 422)
    assert refused["field"] == "worker" and "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$" in refused["message"]


def test_a_job_asks_nobody_to_accept_it(api, conn):
    client = api.client()
    job = new_job(client, group="testers")  # bob is a tester
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE ticket_id = %s", (job["id"],)).fetchone()["n"] == 0
    ticket = api.client().post("/tickets", json={"metaservice": "testms", "type": "submitter", "group": "testers"})
    assert ticket.status_code == 201, ticket.text
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE ticket_id = %s",
                        (ticket.json()["id"],)).fetchone()["n"] == 1, "a ticket that is not a job still asks"


def test_a_ticket_that_is_not_a_job_is_refused_for_what_it_is(api):
    client = api.client()
    other = client.post("/tickets", json={"metaservice": "testms", "type": "submitter"}).json()["id"]
    task = client.post("/tickets", json={"metaservice": "testms", "type": "task"}).json()["id"]
    refused = error_of(client.get(f"/job/{other}"), 404)
    assert refused["message"] == (f"ticket {other} exists but is a testms/submitter ticket, not a job of /job's "
                                  "type testms/job")
    assert "is a testms/task ticket" in error_of(client.get(f"/job/{task}"), 404)["message"]
    assert error_of(client.get(f"/operations/{other}/log"), 404)["message"] == (
        f"ticket {other} exists but is a testms/submitter ticket, not a job (its type has no job: true)")
    assert "does not exist" in error_of(client.get("/job/999999"), 404)["message"]
