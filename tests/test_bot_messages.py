"""Messages between bots: persisted with the sender's step, then a NOTIFY; the receiver hands each to its
handler module's on_<kind> function, and rejects what it cannot handle without going down."""

import pytest
from psycopg.types.json import Jsonb

from common.config.load import load
from common.store import sql
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from common.tickets.read import get_events, get_ticket
from tests.conftest import registered, wait_until, write_config

pytestmark = pytest.mark.processes

SENDER, RECEIVER = "testms-pipe-1-first", "testms-pipe-2-second"


def messages(conn):
    return conn.execute("SELECT kind, sender, outcome, error FROM bot_messages ORDER BY id").fetchall()


def test_a_message_reaches_the_receivers_function_and_a_malformed_one_is_rejected_and_counted(
        tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={SENDER: "handler: tests.handlers:message_a_bot\n"},
                          bot_defaults={"retries": 0})
    cfg = load(folder)
    sync_config(conn, cfg)
    processes.start(SENDER, folder, db_url)
    receiver = processes.start(RECEIVER, folder, db_url)
    wait_until(registered(conn, 2), 30, "both bots to register")
    for kind in ("hello", "nonsense", "boom"):
        create_ticket(conn, cfg, "testms", "pipe", {"to": RECEIVER, "kind": kind})
    # From outside the fleet: a body that is not an object.
    conn.execute("INSERT INTO bot_messages (to_bot, kind, body, sender) VALUES (%s, 'hello', %s, 'someone')",
                 (RECEIVER, Jsonb("just a string")))
    conn.execute("SELECT pg_notify(%s, 'message')", (sql.channel("testms", "pipe", 2),))
    wait_until(lambda: len([m for m in conn.execute("SELECT handled_at FROM bot_messages").fetchall()
                            if m["handled_at"]]) == 4, 30, lambda: f"the messages to be handled: {messages(conn)}")
    rows = {(r["kind"], r["sender"]): r for r in conn.execute("SELECT * FROM bot_messages").fetchall()}
    assert {key: row["outcome"] for key, row in rows.items()} == {
        ("hello", SENDER): "handled", ("nonsense", SENDER): "rejected", ("boom", SENDER): "rejected",
        ("hello", "someone"): "rejected"}
    assert "has no function on_nonsense" in rows["nonsense", SENDER]["error"]
    assert "on_boom raised RuntimeError: cannot take message" in rows["boom", SENDER]["error"]
    assert "the body is not a JSON object" in rows["hello", "someone"]["error"]
    # The receiver stays up, counts the three it rejected, and goes on moving tickets.
    assert receiver.poll() is None
    wait_until(lambda: (conn.execute("SELECT notifications_rejected FROM bot_stats WHERE bot_name = %s",
                                     (RECEIVER,)).fetchone() or {}).get("notifications_rejected") == 3, 30,
               "the rejections to be counted")
    later = create_ticket(conn, cfg, "testms", "pipe", {"to": RECEIVER})
    wait_until(lambda: get_ticket(conn, later).state == 3, 30, "the receiver to keep working")


def test_a_message_to_a_bot_that_does_not_exist_fails_the_senders_step(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={SENDER: "handler: tests.handlers:message_a_bot\n"},
                          bot_defaults={"retries": 0})
    cfg = load(folder)
    sync_config(conn, cfg)
    processes.start(SENDER, folder, db_url)
    ticket_id = create_ticket(conn, cfg, "testms", "pipe", {"to": "testms-pipe-9-nowhere"})
    wait_until(lambda: any(e["kind"] == "escalated" for e in get_events(conn, ticket_id)), 30, "the step to fail")
    assert get_ticket(conn, ticket_id).state == 1
    assert conn.execute("SELECT count(*) AS n FROM bot_messages").fetchone()["n"] == 0
