"""A ticket's deadline and its acceptance rounds are timers of its state's bot: they fire on time, not at the
bot's next sweep (five minutes away here)."""

import shutil

import pytest

from common.config.load import load
from common.people import directory
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from common.tickets.read import get_events, get_ticket
from tests.conftest import ROOT, registered, wait_until

pytestmark = pytest.mark.processes

SUPPORT = ("ann", "bob", "cid")


def test_a_request_times_out_within_a_second_of_its_deadline_after_a_round_every_period(
        tmp_path, db_url, conn, processes):
    folder = tmp_path / "config"
    shutil.copytree(ROOT / "config", folder)
    request = folder / "ticket_types" / "helpdesk" / "request.yaml"
    text = request.read_text()
    assert "lifetime: 10m\nnotification_frequency: 2m\n" in text
    request.write_text(text.replace("lifetime: 10m\nnotification_frequency: 2m\n",
                                    "lifetime: 6s\nnotification_frequency: 2s\n"))
    fleet = (folder / "fleet.yaml").read_text()
    assert "  sweep_interval: 30s\n" in fleet
    (folder / "fleet.yaml").write_text(fleet.replace("  sweep_interval: 30s\n", "  sweep_interval: 5m\n"))
    cfg = load(folder)
    sync_config(conn, cfg)
    for name in (*SUPPORT, "rita"):
        directory.add_user(conn, name)
    directory.add_group(conn, "support", list(SUPPORT))
    processes.start("helpdesk-request-1-new", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")

    ticket_id = create_ticket(conn, cfg, "helpdesk", "request", {"what": "a plant"}, creator="rita")
    wait_until(lambda: get_ticket(conn, ticket_id).state == 4, 15, "the request to time out")
    row = conn.execute("SELECT t.deadline_at, e.at FROM tickets t JOIN ticket_events e ON e.ticket_id = t.id "
                       "AND e.kind = 'timeout' WHERE t.id = %s", (ticket_id,)).fetchone()
    late_s = (row["at"] - row["deadline_at"]).total_seconds()
    assert 0 <= late_s < 1.0, f"timed out {late_s:.2f}s after its deadline"
    # Rounds at 0s, 2s and 4s; none at the deadline, which is the lifetime's last word.
    rounds = conn.execute("SELECT user_name, count(*) AS n FROM notifications WHERE ticket_id = %s "
                          "AND kind = 'acceptance' GROUP BY user_name ORDER BY user_name", (ticket_id,)).fetchall()
    assert [(r["user_name"], r["n"]) for r in rounds] == [(name, 3) for name in SUPPORT]
    assert [e["kind"] for e in get_events(conn, ticket_id)].count("reminder") == 3
    timeouts = conn.execute("SELECT count(*) AS n FROM notifications WHERE user_name = 'rita' AND kind = 'timeout'"
                            ).fetchone()["n"]
    assert timeouts == 1
