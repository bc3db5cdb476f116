"""The HTTP API, served by the real `botfleet api run` process on a real database: tickets created, read,
listed, accepted and closed over HTTP, tokens and scopes, and every refusal a JSON error that names
what was wrong."""

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from common.access.tokens import create_token, revoke_token
from common.config.builtin import API_BOT
from common.config.load import load
from common.people import directory
from common.store.sync import sync_config
from tests.conftest import free_port, wait_until, write_config
from tests.harness import wait_answering
from tests.test_people import botfleet

pytestmark = pytest.mark.processes


class Api:
    def __init__(self, base_url, tokens):
        self.base_url, self.tokens = base_url, tokens

    def client(self, token="all"):
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=15)


def serve_api(tmp_path, db_url, conn, processes, api_extra="", **config_kwargs) -> Api:
    """The real `botfleet api run` on a free port, for a config written by write_config(**config_kwargs) (and
    `api_extra`, lines of its api: section), with the users bob and eve (bob in testers) and two tokens: "all"
    scopes and a "reader"."""
    port = free_port()
    config_kwargs["fleet_extra"] = (config_kwargs.get("fleet_extra", "") + f"api:\n  listen: 127.0.0.1:{port}\n"
                                    + api_extra)
    folder = write_config(tmp_path / "config", **config_kwargs)
    sync_config(conn, load(folder))
    directory.add_user(conn, "bob")
    directory.add_user(conn, "eve")
    directory.add_group(conn, "testers", ["bob"])
    tokens = {"all": create_token(conn, "ci", "read,submit,update,admin"),
              "reader": create_token(conn, "dashboard", "read")}
    server = processes.spawn("api", ["api", "run"], folder, db_url)
    base_url = f"http://127.0.0.1:{port}"
    wait_answering(server, base_url)
    api = Api(base_url, tokens)
    api.config_dir, api.process = folder, server
    return api


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    return serve_api(tmp_path, db_url, conn, processes)


def error_of(response, status):
    assert response.status_code == status, response.text
    return response.json()["error"]


def new_ticket(client, **fields):
    response = client.post("/tickets", json={"metaservice": "testms", "type": "pipe", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_ticket_created_over_http_is_read_back_with_its_history(api):
    with api.client() as client:
        response = client.post("/tickets", json={"metaservice": "testms", "type": "pipe", "payload": {"n": 1},
                                                 "creator": "bob"})
        assert response.status_code == 201, response.text
        ticket = response.json()
        assert response.headers["Location"] == f"/tickets/{ticket['id']}"
        assert (ticket["state"], ticket["state_name"], ticket["payload"], ticket["creator"], ticket["group"]) == (
            1, "first", {"n": 1}, "bob", "testers")
        assert client.get(response.headers["Location"]).json() == ticket
        created, asked = client.get(f"/tickets/{ticket['id']}/events").json()
        assert (created["kind"], created["to_state"], created["actor"]) == ("created", 1, "bob")
        assert (asked["kind"], asked["detail"]) == ("reminder", {"kind": "acceptance", "to": ["bob"]})


def test_tokens_and_scopes(api, conn):
    with api.client(None) as anonymous:
        response = anonymous.get("/tickets")
        assert error_of(response, 401)["code"] == "unauthorized" and response.headers["WWW-Authenticate"] == "Bearer"
        anonymous.headers["Authorization"] = "Bearer bf_not-a-token"
        assert "unknown or revoked" in error_of(anonymous.get("/tickets"), 401)["message"]
    with api.client("reader") as reader:
        assert reader.get("/tickets").status_code == 200
        refused = error_of(reader.post("/tickets", json={"metaservice": "testms", "type": "pipe"}), 403)
        assert refused["message"] == "token 'dashboard' does not have the scope 'submit' (it has: read)"
        revoke_token(conn, "dashboard")
        wait_until(lambda: reader.get("/tickets").status_code == 401, 15, "the revoked token to be refused")
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (b'{"metaservice": "testms", "type": ', 400, "malformed_json", None),
    (json.dumps({"metaservice": "testms", "type": 7}), 422, "invalid", "type"),
    (json.dumps({"metaservice": "testms", "type": "nope"}), 422, "unknown_type", "type"),
    (json.dumps({"metaservice": "testms", "type": "pipe", "payload": [1]}), 422, "invalid", "payload"),
    (json.dumps({"metaservice": "testms", "type": "pipe", "colour": "red"}), 422, "invalid", "colour"),
    (json.dumps({"metaservice": "testms", "type": "pipe", "group": "nobody"}), 422, "unknown_group", "group"),
    (json.dumps({"metaservice": "testms", "type": "pipe", "payload": {"s": "\u0000"}}), 422, "invalid_payload",
     "payload"),
    (json.dumps({"metaservice": "testms", "type": "pipe", "payload": {"s": "x" * 2_000_000}}), 413, "too_large", None),
])
def test_a_bad_create_is_refused_with_what_was_wrong_and_writes_nothing(api, conn, body, status, code, field):
    with api.client() as client:
        error = error_of(client.post("/tickets", content=body, headers={"Content-Type": "application/json"}), status)
    assert (error["code"], error["field"]) == (code, field), error
    if field:
        assert field in error["message"]
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_is_read_as_json_whatever_its_content_type_on_every_route(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    with api.client() as client:
        def send(method, url, body):
            return client.request(method, url, content=json.dumps(body).encode(), headers=headers)
        created = send("POST", "/tickets", {"metaservice": "testms", "type": "pipe", "payload": {"n": 1}})
        assert created.status_code == 201, created.text
        url = f"/tickets/{created.json()['id']}"
        patched = send("PATCH", url, {"payload": {"m": 2}})
        assert patched.status_code == 200 and patched.json()["payload"] == {"n": 1, "m": 2}, patched.text
        accepted = send("POST", url + "/accept", {"user": "bob"})
        assert accepted.status_code == 200 and accepted.json()["assigned_user"] == "bob", accepted.text
        set_type = send("PATCH", "/types/testms/pipe", {"lifetime": "2h"})
        assert set_type.status_code == 200 and set_type.json()["lifetime_s"] == 7200, set_type.text
        closed = send("POST", url + "/close", {"reason": "done"})
        assert closed.status_code == 200 and closed.json()["closed_at"], closed.text
        broken = client.post("/tickets", content=b"metaservice=testms&type=pipe", headers=headers)
        assert error_of(broken, 400)["code"] == "malformed_json"


def test_a_chunked_body_over_the_limit_is_refused_with_413_as_one_with_a_length_is(api, conn):
    def chunks(total_bytes):
        body = json.dumps({"metaservice": "testms", "type": "pipe", "payload": {"s": "x" * total_bytes}}).encode()
        return (body[at:at + 65536] for at in range(0, len(body), 65536))  # no Content-Length: chunked
    with api.client() as client:
        small = client.post("/tickets", content=chunks(100_000), headers={"Content-Type": "application/json"})
        assert small.status_code == 201 and len(small.json()["payload"]["s"]) == 100_000, small.text
        large = client.post("/tickets", content=chunks(2_000_000), headers={"Content-Type": "application/json"})
        error = error_of(large, 413)
        assert error["code"] == "too_large" and "larger than" in error["message"]
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 1


def test_a_retried_create_with_the_same_idempotency_key_gets_the_first_ticket(api, conn):
    with api.client() as client:
        def post(key):
            return client.post("/tickets", json={"metaservice": "testms", "type": "pipe"},
                               headers={"Idempotency-Key": key})
        with ThreadPoolExecutor(8) as pool:  # the same key at once, as a client retrying on a timeout would
            firsts = list(pool.map(post, ["k-1"] * 8))
        assert {r.status_code for r in firsts} == {201}
        assert len({r.json()["id"] for r in firsts}) == 1
        assert post("k-2").json()["id"] != firsts[0].json()["id"]
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 2


def test_pages_follow_ids_so_tickets_created_meanwhile_do_not_shift_them(api):
    with api.client() as client:
        made = [new_ticket(client)["id"] for _ in range(5)]
        seen, cursor = [], None
        while True:
            page = client.get("/tickets", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [t["id"] for t in page["items"]]
            new_ticket(client)  # lands above every page already read
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(made, reverse=True)
        assert error_of(client.get("/tickets", params={"cursor": "x"}), 422)["field"] == "cursor"
        assert error_of(client.get("/tickets", params={"limit": 0}), 422)["field"] == "limit"


def test_accept_and_close_follow_the_groups_and_the_tickets_state(api):
    with api.client() as client:
        ticket = new_ticket(client)
        refused = error_of(client.post(f"/tickets/{ticket['id']}/accept", json={"user": "eve"}), 409)
        assert refused["code"] == "assignee_refused" and "eve" in refused["message"]
        assert client.get(f"/tickets/{ticket['id']}").json()["assigned_user"] is None
        assert client.post(f"/tickets/{ticket['id']}/accept", json={"user": "bob"}).json()["assigned_user"] == "bob"
        closed = client.post(f"/tickets/{ticket['id']}/close", json={"reason": "withdrawn"}).json()
        assert closed["closed_at"] is not None
        again = error_of(client.post(f"/tickets/{ticket['id']}/close", json={"reason": "twice"}), 409)
        assert "is closed" in again["message"]
        assert error_of(client.post("/tickets/999999/close", json={"reason": "x"}), 404)["code"] == "not_found"
        assert error_of(client.get("/tickets/999999"), 404)["message"] == "ticket 999999 does not exist"
        assert error_of(client.get("/tickets/999999/events"), 404)["code"] == "not_found"
        assert error_of(client.get("/nowhere"), 404)["code"] == "not_found"


def test_cli_tokens_are_shown_once_kept_as_a_hash_listed_and_revoked(db_url, conn):
    made = botfleet(db_url, "token", "create", "--name", "deploy", "--scopes", "submit,read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("bf_") and len(token) > 40
    stored = conn.execute("SELECT token_hash, scopes FROM api_tokens WHERE name = 'deploy'").fetchone()
    assert stored["token_hash"] != token and token not in stored["token_hash"] and stored["scopes"] == ["read", "submit"]
    listed = botfleet(db_url, "token", "list").stdout
    assert "deploy" in listed and "read,submit" in listed and token not in listed and "live" in listed
    bad = botfleet(db_url, "token", "create", "--name", "x", "--scopes", "read,root")
    assert bad.returncode == 1 and "unknown scope 'root'; scopes are: read, submit, update, admin, work" in bad.stderr
    bad = botfleet(db_url, "token", "create", "--name", "deploy", "--scopes", "read")
    assert bad.returncode == 1 and "a token named 'deploy' exists already" in bad.stderr
    assert botfleet(db_url, "token", "revoke", "deploy").returncode == 0
    assert "revoked" in botfleet(db_url, "token", "list").stdout
    bad = botfleet(db_url, "token", "revoke", "nobody")
    assert bad.returncode == 1 and "there is no token named 'nobody'" in bad.stderr


def test_a_token_bound_to_a_user_creates_and_accepts_only_as_that_user(api, conn):
    api.tokens["bob"] = create_token(conn, "bobs-app", "read,submit,update", user="bob")
    api.tokens["service"] = create_token(conn, "service", "read,submit,update")
    with api.client("bob") as bob, api.client("service") as service, api.client() as admin:
        assert new_ticket(bob)["creator"] == "bob"
        assert new_ticket(bob, creator="bob")["creator"] == "bob"
        refused = error_of(bob.post("/tickets", json={"metaservice": "testms", "type": "pipe", "creator": "eve"}), 403)
        assert refused["field"] == "creator" and refused["message"] == (
            "token 'bobs-app' acts as user 'bob' and may not act as 'eve' (creator): acting for someone else needs "
            "the admin scope")
        refused = error_of(service.post("/tickets", json={"metaservice": "testms", "type": "pipe", "creator": "bob"}),
                           403)
        assert refused["field"] == "creator" and "bound to no user" in refused["message"]
        assert new_ticket(service)["creator"] == "api:service"
        assert new_ticket(admin, creator="eve")["creator"] == "eve"  # the admin scope acts for anybody
        assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 4

        ticket = new_ticket(admin)["id"]
        refused = error_of(service.post(f"/tickets/{ticket}/accept", json={"user": "bob"}), 403)
        assert refused["field"] == "user" and "bound to no user" in refused["message"]
        api.tokens["eve"] = create_token(conn, "eves-app", "update", user="eve")
        with api.client("eve") as eve:
            refused = error_of(eve.post(f"/tickets/{ticket}/accept", json={"user": "bob"}), 403)
        assert "acts as user 'eve' and may not act as 'bob' (user)" in refused["message"]
        assert admin.get(f"/tickets/{ticket}").json()["assigned_user"] is None
        assert bob.post(f"/tickets/{ticket}/accept", json={"user": "bob"}).json()["assigned_user"] == "bob"


def test_cli_token_bound_to_a_user_is_listed_with_it_and_the_user_must_exist(db_url, conn):
    directory.add_user(conn, "ann")
    made = botfleet(db_url, "token", "create", "--name", "anns-app", "--scopes", "submit", "--user", "ann")
    assert made.returncode == 0, made.stderr
    assert conn.execute("SELECT user_name FROM api_tokens WHERE name = 'anns-app'").fetchone()["user_name"] == "ann"
    assert "as ann" in botfleet(db_url, "token", "list").stdout
    bad = botfleet(db_url, "token", "create", "--name", "x", "--scopes", "submit", "--user", "zed")
    assert bad.returncode == 1 and "no user named 'zed'" in bad.stderr
    assert conn.execute("SELECT count(*) AS n FROM api_tokens WHERE name = 'x'").fetchone()["n"] == 0


def test_types_show_states_and_settings_and_admins_override_lifetime_and_frequency(api):
    with api.client() as admin, api.client("reader") as reader:
        kinds = {(t["metaservice"], t["name"]): t for t in reader.get("/types").json()}
        pipe = kinds[("testms", "pipe")]
        assert [s["name"] for s in pipe["states"]] == ["first", "second", "third", "done", "dropped"]
        assert pipe["transitions"] == [[1, 2], [2, 3], [3, 4, 5]] and pipe["group_role"] == "testers"
        assert (pipe["lifetime_s"], pipe["yaml_lifetime_s"]) == (3600, 3600)
        assert error_of(reader.get("/types/testms/nope"), 404)["message"] == "there is no ticket type testms/nope"
        assert error_of(reader.patch("/types/testms/pipe", json={"lifetime": "2h"}), 403)["code"] == "forbidden"
        changed = admin.patch("/types/testms/pipe", json={"lifetime": "2h"}).json()
        assert (changed["lifetime_s"], changed["yaml_lifetime_s"], changed["notification_frequency_s"]) == (
            7200, 3600, 600)
        bad = error_of(admin.patch("/types/testms/pipe", json={"notification_frequency": "soon"}), 422)
        assert bad["field"] == "notification_frequency" and "soon" in bad["message"]
        assert error_of(admin.patch("/types/testms/pipe", json={"lifetime": -5}), 422)["field"] == "lifetime"
        assert reader.get("/types/testms/pipe").json()["lifetime_s"] == 7200  # the refusals changed nothing
        assert admin.patch("/types/testms/pipe", json={"lifetime": None}).json()["lifetime_s"] == 3600


def test_the_api_runs_as_a_program_of_the_fleet_and_a_killed_or_hung_one_is_restarted(supervised, conn):
    port = free_port()
    fleet = supervised(fleet_extra=f"api:\n  listen: 127.0.0.1:{port}\n").start()
    token = create_token(conn, "probe", "read")

    def answers():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/tickets", headers={"Authorization": f"Bearer {token}"},
                             timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def api_pid():
        info = fleet.info("botfleet", API_BOT)
        return info["pid"] if info["statename"] == "RUNNING" else None
    wait_until(lambda: answers() and fleet.check()[0] == 0, 30, "the API to answer and check to be OK")
    registered_as = conn.execute("SELECT count(*) AS n FROM bot_processes WHERE bot_name = %s AND stopped_at IS NULL",
                                 (API_BOT,)).fetchone()["n"]
    assert registered_as == 1
    killed = api_pid()
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: api_pid() not in (None, killed) and answers(), 30, "the killed API to be back")
    frozen = api_pid()
    os.kill(frozen, signal.SIGSTOP)  # alive to supervisord, silent to the fleet
    wait_until(lambda: [r for r in fleet_restarts(conn) if r.startswith("hung:") and f"(pid {frozen})" in r], 30,
               "the watchdog to restart the hung API")
    wait_until(lambda: api_pid() not in (None, frozen) and answers() and fleet.check()[0] == 0, 30,
               "the API to answer again and check to be OK")


def fleet_restarts(conn):
    return [r["reason"] for r in conn.execute(
        "SELECT reason FROM watchdog_events WHERE bot = %s AND action = 'restart' ORDER BY id", (API_BOT,))]


def test_patch_changes_only_what_is_sent_with_one_event_and_follows_the_graph(api):
    with api.client() as client:
        ticket = new_ticket(client, payload={"keep": True})
        url = f"/tickets/{ticket['id']}"
        assert client.patch(url, json={"payload": {"a": 1, "b": {"c": 2}}}).json()["payload"] == {
            "keep": True, "a": 1, "b": {"c": 2}}
        patched = client.patch(url, json={"payload": {"a": None, "b": {"d": 3}}}).json()
        assert patched["payload"] == {"keep": True, "b": {"c": 2, "d": 3}} and patched["state"] == 1
        refused = error_of(client.patch(url, json={"state": 3, "payload": {"lost": 1}}), 409)
        assert refused["code"] == "transition_not_allowed" and "from state 1 to state 3" in refused["message"]
        assert client.get(url).json() == patched  # nothing of the refused patch
        moved = client.patch(url, json={"state": 2, "payload": {"e": 5}}).json()
        assert (moved["state"], moved["payload"]["e"]) == (2, 5)
        kinds = [(e["kind"], e["detail"]) for e in client.get(url + "/events").json() if e["kind"] != "reminder"]
        assert kinds == [("created", None), ("patched", {"payload": {"a": 1, "b": {"c": 2}}}),
                         ("patched", {"payload": {"a": None, "b": {"d": 3}}}), ("transitioned", {"payload": {"e": 5}})]
        assert error_of(client.patch(url, json={}), 422)["message"] == "send payload, state, or both"
        assert error_of(client.patch("/tickets/999999", json={"state": 2}), 404)["code"] == "not_found"
        client.post(url + "/close", json={"reason": "done"})
        assert "is closed" in error_of(client.patch(url, json={"payload": {"x": 1}}), 409)["message"]


def test_twenty_concurrent_patches_of_different_fields_all_take_effect(api):
    with api.client() as client:
        ticket = new_ticket(client)
        url = f"/tickets/{ticket['id']}"
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda n: client.patch(url, json={"payload": {f"field_{n}": n}}), range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        assert client.get(url).json()["payload"] == {f"field_{n}": n for n in range(20)}
        patches = [e for e in client.get(url + "/events").json() if e["kind"] == "patched"]
        assert len(patches) == 20 and [e["step"] for e in patches] == list(range(1, 21))
