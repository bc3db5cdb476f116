"""Webhooks with the real webhook bot and a receiver started by the test: every state change is POSTed
once, in order per ticket, signed with HMAC-SHA256 under the type's key, also when the receiver was down
for a while; a receiver that refuses a change marks it failed, and `botfleet status` says so. A receiver
that never answers does not stale the bot's heartbeat."""

import hashlib
import hmac
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.config.builtin import WEBHOOK_BOT
from common.config.load import load
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from tests.conftest import BOTFLEET, THREE_STATES, free_port, wait_until, write_config
from tests.harness import child_env, stays_true
from tests.liveness import SilentServer, heartbeat_age_s

pytestmark = pytest.mark.processes

SECRET = "s3cret-for-tests"


class Receiver:
    """An HTTP server that records every POST and GET; /refuse answers 404, a path ending in /moved 302 to redirect_to."""

    def __init__(self, port):
        self.port, self.received, self.server = port, [], None
        self.url = f"http://127.0.0.1:{port}"
        self.redirect_to = None

    def start(self):
        received, receiver = self.received, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), body))
                if self.path.endswith("/moved"):
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect_to)
                else:
                    self.send_response(404 if self.path == "/refuse" else 204)
                self.end_headers()

            def do_GET(self):  # urllib follows a 302 with a GET
                received.append((self.path, dict(self.headers), b""))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver(free_port())
    yield found
    found.stop()


def test_every_change_is_delivered_once_in_order_and_signed_after_the_receiver_was_down(tmp_path, db_url, conn,
                                                                                          processes, receiver):
    hooked = THREE_STATES + f"callback_url: {receiver.url}/hooks\n"
    folder = write_config(tmp_path / "config", types={"testms/hooked": hooked, "testms/plain": THREE_STATES},
                          fleet_extra="webhooks:\n  retry_backoff: 100ms\n  max_backoff: 400ms\n  max_tries: 200\n"
                                      "  timeout: 500ms\n")
    config = load(folder)
    sync_config(conn, config)
    env = {"BOTFLEET_WEBHOOK_SECRET": SECRET}
    for name in config.bots:
        processes.start(name, folder, db_url, env)

    tickets = [create_ticket(conn, config, "testms", "hooked", {"n": n}) for n in range(5)]
    own = create_ticket(conn, config, "testms", "plain", callback_url=f"{receiver.url}/own")
    refused = create_ticket(conn, config, "testms", "plain", callback_url=f"{receiver.url}/refuse")

    def outbox(condition):
        return conn.execute(f"SELECT count(*) AS n FROM webhook_outbox WHERE {condition}").fetchone()["n"]
    # Down: nothing listens, and the bot keeps trying.
    wait_until(lambda: outbox("attempts >= 3") >= 5, 30, "deliveries to be retried while the receiver is down")
    receiver.start()
    # 3 changes per ticket (created in 1, 1 -> 2, 2 -> 3): 5 hooked tickets, one with its own URL, one refused.
    wait_until(lambda: outbox("state = 'delivered'") == 18 and outbox("state = 'failed'") == 3, 60,
               "every change to be delivered")

    by_ticket = {}
    for path, headers, body in receiver.received:
        change = json.loads(body)
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Botfleet-Signature"], expected), (path, body)
        assert headers["X-Botfleet-Event-Id"] == str(change["event_id"])
        by_ticket.setdefault((path, change["ticket_id"]), []).append(change)
    delivered = [change["event_id"] for (path, _), changes in by_ticket.items() if path != "/refuse" for change in changes]
    assert len(delivered) == len(set(delivered)) == 18, "a change was delivered twice, or not at all"
    for ticket in [*tickets, own]:
        path = "/own" if ticket == own else "/hooks"
        changes = by_ticket[(path, ticket)]
        assert [(c["from_state"], c["to_state"]) for c in changes] == [(None, 1), (1, 2), (2, 3)], changes
        assert [c["event_id"] for c in changes] == sorted(c["event_id"] for c in changes)
    # A receiver that answers 404 refuses the change: failed at the first try, and the next ones go on.
    assert [len(by_ticket[("/refuse", refused)])] == [3]

    status = subprocess.run([*BOTFLEET, "--config", str(folder), "status", "--json"], env=child_env(db_url),
                            capture_output=True, text=True)
    assert json.loads(status.stdout)["webhooks"] == {"pending": 0, "retrying": 0, "failed": 3}, status.stderr
    assert WEBHOOK_BOT in config.bots


def test_a_tickets_own_callback_url_must_match_webhooks_allow_and_redirects_are_not_followed(
        tmp_path, db_url, conn, processes, receiver):
    from tests.test_api import error_of, serve_api

    inside = Receiver(free_port())  # an "internal" server: a redirect must never reach it
    inside.start()
    try:
        receiver.redirect_to = f"{inside.url}/admin"
        api = serve_api(tmp_path, db_url, conn, processes,
                        fleet_extra=f"webhooks:\n  retry_backoff: 100ms\n  allow: ['{receiver.url}/ok/']\n")
        receiver.start()
        processes.start(WEBHOOK_BOT, api.config_dir, db_url, {"BOTFLEET_WEBHOOK_SECRET": SECRET})
        with api.client() as client:
            for url in (f"{inside.url}/ok/admin", f"{receiver.url}/other", f"{receiver.url}/ok/../admin",
                        f"{receiver.url}/ok.evil/"):
                refused = error_of(client.post("/tickets", json={"metaservice": "testms", "type": "pipe",
                                                                 "callback_url": url}), 422)
                assert (refused["code"], refused["field"]) == ("callback_url_refused", "callback_url"), refused
                assert url in refused["message"]
            assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0
            delivered = client.post("/tickets", json={"metaservice": "testms", "type": "pipe",
                                                      "callback_url": f"{receiver.url}/ok/hooks"})
            moved = client.post("/tickets", json={"metaservice": "testms", "type": "pipe",
                                                  "callback_url": f"{receiver.url}/ok/moved"})
            assert (delivered.status_code, moved.status_code) == (201, 201), (delivered.text, moved.text)

        def outbox(ticket):
            return conn.execute("SELECT state, last_error AS error FROM webhook_outbox WHERE ticket_id = %s",
                                (ticket.json()["id"],)).fetchone()
        wait_until(lambda: outbox(delivered) and outbox(delivered)["state"] == "delivered", 30,
                   "the allowed callback to be delivered")
        wait_until(lambda: outbox(moved) and outbox(moved)["state"] == "failed", 30, "the redirected one to fail")
        assert "answered 302" in outbox(moved)["error"] and "redirects are not followed" in outbox(moved)["error"]
        assert sorted(path for path, _, _ in receiver.received) == ["/ok/hooks", "/ok/moved"]
        assert inside.received == []
    finally:
        inside.stop()


def test_without_webhooks_allow_a_ticket_may_not_set_its_own_callback_url(tmp_path, db_url, conn, processes):
    from tests.test_api import error_of, serve_api

    api = serve_api(tmp_path, db_url, conn, processes)
    with api.client() as client:
        refused = error_of(client.post("/tickets", json={"metaservice": "testms", "type": "pipe",
                                                         "callback_url": "http://127.0.0.1:9/x"}), 422)
    assert refused["field"] == "callback_url" and "allows none" in refused["message"]
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0


@pytest.fixture
def silent_receiver():
    server = SilentServer(free_port())
    yield server
    server.stop()


@pytest.mark.process_faults  # about the bot's liveness, not SQL: the first CI run is enough
def test_a_receiver_that_never_answers_does_not_stale_the_heartbeat(tmp_path, db_url, conn, processes,
                                                                    silent_receiver):
    # Slow heartbeats (4 s, hung after 12 s) allow a request timeout of 6 s: a bot that waited on its
    # receivers in its loop would show a heartbeat at least 6 s old after each batch; one that does not,
    # at most 4 s and a little.
    hooked = THREE_STATES + f"callback_url: http://127.0.0.1:{silent_receiver.port}/hooks\n"
    folder = write_config(tmp_path / "config", types={"testms/hooked": hooked}, bot_defaults={"lease": "20s"},
                          fleet_extra="webhooks:\n  retry_backoff: 100ms\n  max_backoff: 100ms\n  max_tries: 1000\n"
                                      "  timeout: 6s\n")
    fleet = folder / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("heartbeat_interval: 500ms", "heartbeat_interval: 4s"))
    config = load(folder)
    sync_config(conn, config)
    processes.start(WEBHOOK_BOT, folder, db_url, {"BOTFLEET_WEBHOOK_SECRET": SECRET})
    wait_until(lambda: heartbeat_age_s(conn, WEBHOOK_BOT) is not None, 30, "the webhook bot to register")
    for n in range(8):
        create_ticket(conn, config, "testms", "hooked", {"n": n})

    worst = {"heartbeat_age_s": 0.0}

    def fresh():
        worst["heartbeat_age_s"] = max(worst["heartbeat_age_s"], heartbeat_age_s(conn, WEBHOOK_BOT))
        return worst["heartbeat_age_s"] < 5.0
    stays_true(fresh, 25, lambda: f"the webhook bot's heartbeat fresh (worst {worst})")
    # Every POST waited for its timeout: two batches or more went out meanwhile.
    assert silent_receiver.accepted >= 16, silent_receiver.accepted
    assert conn.execute("SELECT min(attempts) AS n FROM webhook_outbox").fetchone()["n"] >= 2


def test_a_delivery_behind_one_in_backoff_is_not_due_so_the_bot_does_not_spin(conn):
    """A ticket's changes go to a receiver in order: the one behind a try backing off for an hour waits with
    it, and the webhook bot's next due time says so (a due time in the past would turn its loop for the hour)."""
    from common.store import sql

    for offset in ("1 hour", "-1 minute"):  # the older row backs off; the newer one is past its own time
        conn.execute("INSERT INTO webhook_outbox (ticket_id, event_id, metaservice, ticket_type, url, at, next_try_at) "
                     "VALUES (1, 1, 'ms', 't', 'http://x', now(), botfleet_now() + %s::interval)", (offset,))
    assert 3500 < conn.execute(sql.NEXT_WEBHOOK_DUE).fetchone()["due_in_s"] <= 3600
