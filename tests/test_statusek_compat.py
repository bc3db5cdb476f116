"""The upstream statusek service's replies under /statusek/ (api/statusek_compat.py), against the real API
process and database, through a client written from upstream's documentation (tests/statusek_client.py):
every call answers 200 with {"status", "message", "data"} in upstream's words, for any method and wherever
the parameters are, and without upstream's defects."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from common.store.clock import shift
from tests.statusek_client import StatusekClient, StatusekError
from tests.test_api import serve_api
from tests.test_status_models import BUILD_MODEL, SHIPPED, TOKEN_0, counts

pytestmark = pytest.mark.processes

OPEN = "statusek:\n  open_create: true\n"


def _serve(tmp_path, db_url, conn, processes, fleet_extra=""):
    models = tmp_path / "config" / "status_models"
    models.mkdir(parents=True)
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, models / path.name)
    (models / "build.yaml").write_text(BUILD_MODEL)
    return serve_api(tmp_path, db_url, conn, processes, fleet_extra=fleet_extra)


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    """The API with the shipped status models and BUILD, creating without a token on /statusek/."""
    return _serve(tmp_path, db_url, conn, processes, OPEN)


@pytest.fixture
def upstream(api):
    with StatusekClient(api.base_url + "/statusek") as client:
        yield client


def test_an_upstream_client_runs_the_seeds_example_unchanged(upstream):
    token = upstream.create("2-POINT LINE TASK", 600)
    assert upstream.events(token) == []  # upstream answers null for none
    assert upstream.is_finished(token) == (False, "")
    assert upstream.status_is_set(token, "RUN") is False
    assert upstream.ready_to_set(token, "FINISHED") == (
        False, "Not all previos mandatory statuses are set for status 'FINISHED'")
    assert upstream.ready_to_set(token, "RUN") == (True, "")
    assert upstream.call("status/setStatus", instance_token=token, status_name="RUN") == {
        "status": True, "message": "", "data": {}}
    assert upstream.status_is_set(token, "RUN") is True
    upstream.set_status(token, "FINISHED")
    assert upstream.is_finished(token) == (True, "ALL_MANDATORY_STATUSES_ARE_SET")
    events = upstream.events(token)
    assert [(e["Status"]["StatusName"], e["Status"]["StatusType"], e["Status"]["StatusDesc"]) for e in events] == [
        ("RUN", "MANDATORY", "Task is running"), ("FINISHED", "MANDATORY", "Task is finished")]
    assert events[0]["EventCreationDt"] <= events[1]["EventCreationDt"]
    assert events[0]["Status"]["ObjectID"] == events[1]["Status"]["ObjectID"]
    with pytest.raises(StatusekError, match=rf"^Instance '{token}' is finished by 'ALL_MANDATORY_STATUSES_ARE_SET'$"):
        upstream.ready_to_set(token, "RUN")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("carrier", ["query", "json", "curl -d", "form"])
def test_any_method_with_the_parameters_in_the_query_or_the_body(api, upstream, method, carrier):
    token = upstream.create("2-POINT LINE TASK", 600)
    params = {"instance_token": token, "status_name": "RUN"}
    send = {"query": {"params": params}, "json": {"json": params},
            "curl -d": {"content": httpx.Request("POST", "/", json=params).content,
                        "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            "form": {"data": params}}[carrier]
    with httpx.Client(base_url=api.base_url, timeout=15) as client:
        response = client.request(method, "/statusek/status/setStatus", **send)
    assert (response.status_code, response.json()) == (200, {"status": True, "message": "", "data": {}})
    assert upstream.status_is_set(token, "RUN") is True


def test_refusals_answer_200_with_status_false_in_upstreams_words_and_write_nothing(upstream, conn):
    review = upstream.create("DOCUMENT REVIEW", 600)
    build = upstream.create("BUILD", 600)
    upstream.set_status(review, "RECEIVED")
    upstream.set_status(build, "FETCHED")
    upstream.set_status(build, "BUILT")
    before = counts(conn)
    cases = [
        ({"instance_token": TOKEN_0, "status_name": "RUN"}, f"ERROR: Instance token '{TOKEN_0}' is not found"),
        ({"instance_token": "nope", "status_name": "RUN"}, "ERROR: Instance token 'nope' is not found"),
        ({"instance_token": review, "status_name": "NOPE"},
         f"ERROR: Status name 'NOPE' is not found for instance '{review}'"),
        ({"instance_token": review, "status_name": "RECEIVED"},
         f"Status 'RECEIVED' is already set for instance '{review}'"),
        ({"instance_token": build, "status_name": "CACHED"},
         "At least one next status is set for optional status 'CACHED'"),
    ]
    for params, message in cases:
        assert upstream.call("status/setStatus", **params) == {"status": False, "message": message, "data": {}}
    fresh = upstream.create("BUILD", 600)
    assert upstream.call("status/setStatus", instance_token=fresh, status_name="BUILT")["message"] == (
        "No one previos optional statuses are sets for status 'BUILT'")
    assert upstream.ready_to_set(fresh, "BUILT") == (
        False, "No one previos optional statuses are sets for status 'BUILT'")
    assert upstream.call("instance/create", object_name="NO SUCH TASK", instance_timeout=5) == {
        "status": False, "message": "ERROR: Object name 'NO SUCH TASK' is not found", "data": {}}
    upstream.set_status(review, "REJECTED")
    assert upstream.is_finished(review) == (True, "STOP_STATUS_IS_SET")
    assert upstream.events(review)[-1]["Status"]["StatusType"] == "STOP-STATUS"
    assert upstream.call("status/setStatus", instance_token=review, status_name="APPROVED")["message"] == (
        f"Instance '{review}' is finished by 'STOP_STATUS_IS_SET'")
    assert counts(conn) == {"instances": before["instances"] + 1, "events": before["events"] + 1}


def test_a_timed_out_instance_says_so(upstream, conn):
    token = upstream.create("2-POINT LINE TASK", 60)
    shift(conn, 61)
    assert upstream.is_finished(token) == (True, "TIMEOUT")
    assert upstream.call("status/setStatus", instance_token=token, status_name="RUN")["message"] == (
        f"Instance '{token}' is finished by 'TIMEOUT'")


@pytest.mark.parametrize(("body", "content_type", "words"), [
    (b"{not json", None, "the body is not JSON"),
    (b"[]", "application/json", "must be a JSON object"),
    (b"", None, "no parameters"),
    (b'{"instance_token": 5}', None, "instance_token must be a text, got 5"),
    (b"a=1&&&b", "application/x-www-form-urlencoded", "the body is not a form"),
])
def test_a_body_that_cannot_be_read_gets_a_json_reply(api, body, content_type, words):
    with httpx.Client(base_url=api.base_url, timeout=15) as client:
        response = client.post("/statusek/event/getEvents", content=body,
                               headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["status"] is False and reply["data"] == {}
    assert reply["message"].startswith("Error while parameters parsing: ") and words in reply["message"]


@pytest.mark.parametrize("timeout", [None, 0, -5, 1.5, True])
def test_a_missing_zero_negative_or_non_integer_timeout_is_refused_not_born_timed_out(upstream, conn, timeout):
    params = {"object_name": "2-POINT LINE TASK", **({} if timeout is None else {"instance_timeout": timeout})}
    reply = upstream.call("instance/create", **params)
    assert reply["status"] is False and "instance_timeout must be a whole number of seconds" in reply["message"]
    assert counts(conn)["instances"] == 0


def test_twenty_concurrent_sets_of_one_status_give_exactly_one_success(api, upstream, conn):
    token = upstream.create("2-POINT LINE TASK", 600)

    def attempt(_):
        with StatusekClient(api.base_url + "/statusek") as each:
            return each.call("status/setStatus", instance_token=token, status_name="RUN")

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(attempt, range(20)))
    assert sorted(reply["status"] for reply in replies) == [False] * 19 + [True]
    assert {reply["message"] for reply in replies if not reply["status"]} == {
        f"Status 'RUN' is already set for instance '{token}'"}
    assert [e["Status"]["StatusName"] for e in upstream.events(token)] == ["RUN"]
    assert counts(conn)["events"] == 1


def test_without_open_create_creating_needs_a_bearer_token_and_nothing_else_does(tmp_path, db_url, conn, processes):
    api = _serve(tmp_path, db_url, conn, processes)
    with StatusekClient(api.base_url + "/statusek") as anonymous:
        reply = anonymous.call("instance/create", object_name="2-POINT LINE TASK", instance_timeout=60)
        assert reply["status"] is False and "bearer token" in reply["message"] and "open_create" in reply["message"]
        assert counts(conn)["instances"] == 0
        with api.client() as client:
            created = client.post("/statusek/instance/create",
                                  json={"object_name": "2-POINT LINE TASK", "instance_timeout": 60}).json()
        token = created["data"]["instance_token"]
        anonymous.set_status(token, "RUN")
        assert anonymous.status_is_set(token, "RUN") is True
