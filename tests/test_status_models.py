"""Status models (seed 001, statusek) over HTTP, against the real API process and database: the seed's
endpoints and reply shapes, every rule of the model, each way an instance finishes, and refusals that
write nothing."""

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from common.config.builtin import STATUS_BOT
from common.store.clock import shift
from tests.conftest import BOTFLEET, wait_until
from tests.harness import child_env
from tests.test_api import serve_api
from watchdog.collector import scrape_text

pytestmark = pytest.mark.processes

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "status_models"
TOKEN_0 = "00000000-0000-0000-0000-000000000000"


# Two optional ways into BUILT, which is mandatory and followed by another mandatory status.
BUILD_MODEL = """object: BUILD
statuses:
  FETCHED: {type: OPTIONAL}
  CACHED: {type: OPTIONAL}
  BUILT: {type: MANDATORY}
  PUBLISHED: {type: MANDATORY}
workflow:
  - [FETCHED, BUILT]
  - [CACHED, BUILT]
  - [BUILT, PUBLISHED]
"""


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    """The API with the shipped status models and BUILD."""
    models = tmp_path / "config" / "status_models"
    models.mkdir(parents=True)
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, models / path.name)
    (models / "build.yaml").write_text(BUILD_MODEL)
    server = serve_api(tmp_path, db_url, conn, processes)
    server.db_url, server.processes = db_url, processes
    return server


def create(client, object_name="2-POINT LINE TASK", timeout_s=600) -> str:
    response = client.post("/instance/create", json={"object_name": object_name, "instance_timeout": timeout_s})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["message"]) == (True, "Success")
    return body["instance_token"]


def call(client, path, token, status=None, **extra):
    body = {"instance_token": token, **({"status_name": status} if status else {}), **extra}
    return client.post(path, json=body)


def set_status(client, token, status, expect=200, **extra):
    response = call(client, "/status/setStatus", token, status, **extra)
    assert response.status_code == expect, response.text
    return response.json()


def finished(client, token):
    response = call(client, "/instance/checkIsFinished", token)
    assert response.status_code == 200, response.text
    return response.json()


def event_names(client, token):
    response = call(client, "/event/getEvents", token)
    assert response.status_code == 200, response.text
    return [event["Status"]["StatusName"] for event in response.json()["events"]]


def counts(conn):
    return conn.execute("SELECT (SELECT count(*) FROM status_instances) AS instances, "
                        "(SELECT count(*) FROM status_events) AS events").fetchone()


def test_the_seeds_example_runs_then_finishes_with_the_seeds_replies(api):
    with api.client() as client:
        token = create(client)
        curl_d = client.post("/status/checkStatusIsSet", content=f'{{"instance_token": "{token}", "status_name": '
                             '"RUN"}', headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert curl_d.json() == {"status": False, "message": "Status is not set"}  # raw JSON, whatever the type
        assert call(client, "/event/getEvents", token).json() == {"status": True, "message": "Success", "events": []}
        assert set_status(client, token, "RUN", status_message="started") == {"status": True, "message": "Success"}
        assert call(client, "/status/checkStatusIsSet", token, "RUN").json() == {"status": True,
                                                                                "message": "Status is set"}
        assert call(client, "/status/checkStatusIsSet", token, "FINISHED").json() == {"status": False,
                                                                                     "message": "Status is not set"}
        assert finished(client, token) == {"status": False, "message": "Instance is not finished", "reason": None,
                                           "stop_status": None}
        set_status(client, token, "FINISHED")
        done = finished(client, token)
        assert (done["status"], done["reason"]) == (True, "completed")
        events = call(client, "/event/getEvents", token).json()["events"]
    assert [(e["Status"]["StatusName"], e["Status"]["StatusType"], e["Status"]["StatusDesc"], e["StatusMessage"])
            for e in events] == [("RUN", "MANDATORY", "Task is running", "started"),
                                 ("FINISHED", "MANDATORY", "Task is finished", None)]
    assert events[0]["EventCreationDt"] <= events[1]["EventCreationDt"]
    assert events[0]["Status"]["ObjectID"] == events[1]["Status"]["ObjectID"]
    assert events[0]["Status"]["StatusID"] != events[1]["Status"]["StatusID"]


def test_a_stop_status_finishes_an_instance_and_nothing_can_be_set_after_it(api, conn):
    with api.client() as client:
        token = create(client, "DOCUMENT REVIEW")
        set_status(client, token, "RECEIVED")
        set_status(client, token, "WITHDRAWN")
        done = finished(client, token)
        assert (done["status"], done["reason"], done["stop_status"]) == (True, "stopped", "WITHDRAWN")
        before = counts(conn)
        refused = set_status(client, token, "APPROVED", expect=409)
    assert refused["status"] is False and token in refused["message"] and "finished" in refused["message"]
    assert counts(conn) == before


@pytest.mark.parametrize(("steps", "refused_status", "words"), [
    ([], "APPROVED", ["needs RECEIVED"]),  # a mandatory predecessor missing
    (["RECEIVED"], "RECEIVED", ["already set"]),  # at most once
    (["RECEIVED", "REJECTED"], "SPELLING_CHECKED", ["finished"]),
    (["RECEIVED", "SPELLING_CHECKED"], "NOT_A_STATUS", ["not a status", "DOCUMENT REVIEW"]),
])
def test_a_status_the_model_does_not_allow_now_is_refused_by_name_and_writes_nothing(api, conn, steps,
                                                                                      refused_status, words):
    with api.client() as client:
        token = create(client, "DOCUMENT REVIEW")
        for step in steps:
            set_status(client, token, step)
        before = counts(conn)
        response = call(client, "/status/setStatus", token, refused_status)
        assert response.status_code == (400 if refused_status == "NOT_A_STATUS" else 409), response.text
        body = response.json()
        assert body["status"] is False and refused_status in body["message"]
        for word in words:
            assert word in body["message"]
        assert event_names(client, token) == steps
    assert counts(conn) == before


def test_optional_predecessors_need_one_of_them_and_an_optional_status_comes_too_late_after_its_successor(
        api, conn):
    with api.client() as client:
        token = create(client, "BUILD")
        before = counts(conn)
        refused = set_status(client, token, "BUILT", expect=409)
        assert "needs one of CACHED, FETCHED" in refused["message"] and token in refused["message"]
        assert counts(conn) == before
        set_status(client, token, "FETCHED")
        set_status(client, token, "BUILT")
        before = counts(conn)
        late = set_status(client, token, "CACHED", expect=409)
        assert "CACHED" in late["message"] and "BUILT is already set" in late["message"]
        assert counts(conn) == before
        set_status(client, token, "PUBLISHED")
        assert finished(client, token)["reason"] == "completed"
        assert event_names(client, token) == ["FETCHED", "BUILT", "PUBLISHED"]


def test_a_timeout_finishes_an_instance_whoever_asks_and_before_anyone_does(api, conn):
    with api.client() as client:
        asked = create(client, timeout_s=60)
        unasked = create(client, timeout_s=60)
        later = create(client, timeout_s=3600)
        set_status(client, asked, "RUN")
        shift(conn, 61)
        done = finished(client, asked)
        assert (done["status"], done["reason"]) == (True, "timed_out")
        before = counts(conn)
        refused = set_status(client, asked, "FINISHED", expect=409)
        assert "finished (timed_out)" in refused["message"]
        assert counts(conn) == before

    def reason(token):
        return conn.execute("SELECT finish_reason, finished_at = deadline_at AS at_deadline FROM status_instances "
                            "WHERE token = %s", (token,)).fetchone()

    assert reason(unasked) == {"finish_reason": None, "at_deadline": None}  # nobody asked, nothing swept yet
    api.processes.start(STATUS_BOT, api.config_dir, api.db_url)  # the fleet's bot sweeps them
    wait_until(lambda: reason(unasked)["finish_reason"] == "timed_out", 30, "the sweep to time the instance out")
    assert reason(unasked)["at_deadline"] is True
    assert reason(later)["finish_reason"] is None


@pytest.mark.parametrize("timeout", [None, 0, -5, 1.5, "600", True])
def test_a_missing_zero_negative_or_non_integer_timeout_is_refused_and_writes_nothing(api, conn, timeout):
    body = {"object_name": "2-POINT LINE TASK", **({} if timeout is None else {"instance_timeout": timeout})}
    with api.client() as client:
        response = client.post("/instance/create", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["status"] is False and "instance_timeout" in response.json()["message"]
    assert counts(conn)["instances"] == 0


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/status/setStatus", b"{not json", 400, ["JSON"]),
    ("/status/setStatus", b"", 400, ["JSON object"]),
    ("/instance/checkIsFinished", b"[]", 400, ["JSON object"]),
    ("/event/getEvents", b'{"instance_token": "nope"}', 400, ["nope", "UUID"]),
    ("/event/getEvents", f'{{"instance_token": "{TOKEN_0}"}}'.encode(), 404, [TOKEN_0]),
])
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])  # none, or curl -d's
def test_malformed_empty_or_unknown_requests_get_a_json_reply(api, path, body, status, words, content_type):
    with httpx.Client(base_url=api.base_url, timeout=15) as client:
        response = client.post(path, content=body, headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code == status, response.text
    reply = response.json()
    assert reply["status"] is False and reply["error"]["code"]
    for word in words:
        assert word in reply["message"]


def test_every_refusal_under_the_seeds_prefixes_is_in_the_seeds_shape(api, conn):
    big = json.dumps({"instance_token": TOKEN_0, "status_name": "x" * 2_000_000}).encode()
    with httpx.Client(base_url=api.base_url, timeout=15) as client:
        for response, status in [
                (client.post("/status/setStatus", content=big), 413),  # with a Content-Length
                (client.post("/status/setStatus", content=(big[at:at + 65536] for at in range(0, len(big), 65536))),
                 413),  # chunked
                (client.post("/status/nothingHere", json={}), 404), (client.post("/instance/nothingHere"), 404),
                (client.post("/event/nothingHere"), 404), (client.get("/status/setStatus"), 405),
                (client.post("/instance/create", json={"object_name": "x", "instance_timeout": 5}), 401)]:
            assert response.status_code == status, response.text
            reply = response.json()
            assert reply["status"] is False and reply["message"] == reply["error"]["message"], reply
    assert counts(conn)["instances"] == 0


def test_creating_needs_a_token_with_submit_and_an_object_that_has_a_model(api, conn):
    with httpx.Client(base_url=api.base_url, timeout=15) as anonymous:
        response = anonymous.post("/instance/create", json={"object_name": "2-POINT LINE TASK", "instance_timeout": 5})
    assert response.status_code == 401 and response.json()["status"] is False
    with api.client("reader") as reader:
        response = reader.post("/instance/create", json={"object_name": "2-POINT LINE TASK", "instance_timeout": 5})
    assert response.status_code == 403 and "submit" in response.json()["message"]
    with api.client() as client:
        response = client.post("/instance/create", json={"object_name": "NO SUCH TASK", "instance_timeout": 5})
    assert response.status_code == 404 and "NO SUCH TASK" in response.json()["message"]
    assert counts(conn)["instances"] == 0


def test_twenty_concurrent_calls_setting_one_status_give_one_success_and_one_event(api, conn):
    with api.client() as client:
        token = create(client)

    def attempt(_):
        with httpx.Client(base_url=api.base_url, timeout=15) as each:
            return call(each, "/status/setStatus", token, "RUN").status_code

    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(attempt, range(20)))
    assert codes == [200] + [409] * 19
    assert conn.execute("SELECT count(*) AS n FROM status_events").fetchone()["n"] == 1


def test_instances_by_model_and_finish_reason_in_the_metrics_and_the_cli(api, db_url):
    with api.client() as client:
        done = create(client)
        set_status(client, done, "RUN")
        set_status(client, done, "FINISHED")
        create(client)
        stopped = create(client, "DOCUMENT REVIEW")
        set_status(client, stopped, "RECEIVED")
        set_status(client, stopped, "REJECTED")
    metrics = scrape_text(db_url)
    for line in ('botfleet_status_instances{finish_reason="completed",object="2-POINT LINE TASK"} 1.0',
                 'botfleet_status_instances{finish_reason="open",object="2-POINT LINE TASK"} 1.0',
                 'botfleet_status_instances{finish_reason="stopped",object="DOCUMENT REVIEW"} 1.0'):
        assert line in metrics, metrics
    listed = subprocess.run([*BOTFLEET, "--config", str(api.config_dir), "status-model", "list", "--json"],
                            capture_output=True, text=True, timeout=60, env=child_env(db_url), check=True)
    instances = {model["object"]: model["instances"] for model in json.loads(listed.stdout)}
    assert instances["2-POINT LINE TASK"] == {"open": 1, "completed": 1, "stopped": 0, "timed_out": 0}
    assert instances["DOCUMENT REVIEW"]["stopped"] == 1 and instances["BUILD"]["open"] == 0


def test_config_check_warns_about_a_status_the_model_can_never_set_and_passes(config_dir, cli):
    models = config_dir / "status_models"
    models.mkdir()
    shutil.copy(SHIPPED / "2_point_line_task.yaml", models)
    (models / "archive.yaml").write_text("object: ARCHIVED TASK\nstatuses:\n  RUN: {type: MANDATORY}\n"
                                         "  FINISHED: {type: MANDATORY}\n  ARCHIVED: {type: OPTIONAL}\n"
                                         "workflow:\n  - [RUN, FINISHED]\n  - [FINISHED, ARCHIVED]\n")
    check = cli("config", "check")
    assert "is valid" in check.stdout
    assert check.stderr.strip().splitlines() == [
        f"botfleet: warning: {models / 'archive.yaml'}:5: statuses.ARCHIVED: status 'ARCHIVED' of 'ARCHIVED TASK' "
        "can never be set: it needs FINISHED, RUN set first, every MANDATORY status, which finishes the instance"]
