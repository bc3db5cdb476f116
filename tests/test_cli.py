"""The `botfleet` command line as people and scripts use it, against a real database."""

import json
import os
import subprocess

from common.store.connect import connect
from common.store.revision import check_schema
from common.store.sync import sync_config
from common.tickets.create import create_tickets
from tests.conftest import BOTFLEET, ROOT


def test_create_show_list_and_send(cli):
    ticket_id = int(cli("ticket", "create", "testms", "pipe", "--payload", '{"summary": "x"}').stdout)
    shown = json.loads(cli("ticket", "show", str(ticket_id), "--json").stdout)
    assert {k: shown[k] for k in ("id", "metaservice", "type", "state", "state_name", "closed_at")} == {
        "id": ticket_id, "metaservice": "testms", "type": "pipe", "state": 1, "state_name": "first",
        "closed_at": None}
    assert [set(e) >= {"kind", "from_state", "to_state", "at", "actor"} for e in shown["events"]] == [True]
    cli("ticket", "send", str(ticket_id), "--actor", "alice")
    listed = json.loads(cli("ticket", "list", "--metaservice", "testms", "--state", "2", "--json").stdout)
    assert [t["id"] for t in listed] == [ticket_id]
    assert json.loads(cli("ticket", "show", str(ticket_id), "--json").stdout)["events"][-1]["actor"] == "alice"


def test_bad_requests_get_a_clear_error(cli):
    assert "unknown ticket type testms/nope" in cli("ticket", "create", "testms", "nope", expect=1).stderr
    assert "--payload is not valid JSON" in cli("ticket", "create", "testms", "pipe", "--payload", "{", expect=1).stderr
    assert "ticket 999999 does not exist" in cli("ticket", "show", "999999", expect=1).stderr
    ticket_id = cli("ticket", "create", "testms", "pipe").stdout.strip()
    assert "from state 1 to state 4 is not allowed" in cli("ticket", "send", ticket_id, "--to", "4", expect=1).stderr


def test_status_json(cli, conn, fleet_config):
    sync_config(conn, fleet_config)
    cli("ticket", "create", "testms", "pipe")
    status = json.loads(cli("status", "--json").stdout)
    bot = next(b for b in status["bots"] if b["name"] == "testms-pipe-1-first")
    assert {k: bot[k] for k in ("state", "last_heartbeat_at", "processed", "failed")} == {
        "state": None, "last_heartbeat_at": None, "processed": 0, "failed": 0}
    assert {"metaservice": "testms", "ticket_type": "pipe", "state": 1, "state_name": "first", "open": 1,
            "closed": 0} in status["tickets"]


def test_db_upgrade_creates_the_schema_and_syncs_the_config(empty_db_url, config_dir):
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    result = subprocess.run([*BOTFLEET, "--config", str(config_dir), "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with connect(empty_db_url) as conn:
        check_schema(conn)
        names = [r["name"] for r in conn.execute("SELECT name FROM bots ORDER BY name").fetchall()]
    assert names[0] == "testms-pipe-1-first" and len(names) == 5



def test_output_cut_short_by_the_reader_is_not_an_error(db_url, conn, synced, config_dir):
    # More JSON than a pipe holds, so the command is still writing when the reader goes away.
    create_tickets(conn, synced, "testms", "pipe", [{"n": n} for n in range(600)])
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*BOTFLEET, "--config", str(config_dir), "ticket", "list", "--json", "--limit", "600"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"["  # `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_payload_from_a_file_or_standard_input(cli, db_url, config_dir, tmp_path):
    (tmp_path / "p.json").write_text('{"from": "file"}')
    from_file = cli("ticket", "create", "testms", "pipe", "--payload", f"@{tmp_path / 'p.json'}").stdout.strip()
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    from_stdin = subprocess.run([*BOTFLEET, "--config", str(config_dir), "ticket", "create", "testms", "pipe",
                                 "--payload", "-"], input='{"from": "stdin"}', cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60).stdout.strip()
    payloads = [json.loads(cli("ticket", "show", i, "--json").stdout)["payload"] for i in (from_file, from_stdin)]
    assert payloads == [{"from": "file"}, {"from": "stdin"}]
    missing = cli("ticket", "create", "testms", "pipe", "--payload", "@/nonexistent.json", expect=1).stderr
    assert "cannot read /nonexistent.json" in missing


def test_refused_by_hand_an_empty_assignee_and_an_error_ticket(cli):
    ticket_id = cli("ticket", "create", "testms", "pipe").stdout.strip()
    assert "must be a non-empty name" in cli("ticket", "assign", ticket_id, "", expect=1).stderr
    refused = cli("ticket", "create", "botfleet", "error", expect=1).stderr
    assert "botfleet/error tickets are raised by bots" in refused
    assert "assigned" not in [e["kind"] for e in json.loads(cli("ticket", "show", ticket_id, "--json").stdout)["events"]]


def test_close_by_hand_records_who_and_why(cli):
    ticket_id = cli("ticket", "create", "testms", "pipe").stdout.strip()
    cli("ticket", "close", ticket_id, "--reason", "the plan was retired", "--actor", "alice")
    shown = json.loads(cli("ticket", "show", ticket_id, "--json").stdout)
    assert shown["state"] == 1 and shown["closed_at"] is not None
    assert [(e["kind"], e["actor"], e["detail"]) for e in shown["events"]][-1] == (
        "closed", "alice", {"reason": "the plan was retired"})
    assert "is closed" in cli("ticket", "close", ticket_id, "--reason", "again", expect=1).stderr


def test_a_printed_database_url_hides_its_password():
    from common.store.connect import redacted

    assert "s3cret" not in redacted("postgresql://bot:s3cret@db.example:5432/fleet")
    assert "password=********" in redacted("postgresql://bot:s3cret@db.example:5432/fleet")
    assert redacted("postgresql://bot@db.example/fleet") == "user=bot dbname=fleet host=db.example"
