"""The metaservices that ship in config/ run end to end as real bot processes."""

import shutil

import pytest

from common.config.load import load
from common.notifications.outbox import inbox
from common.people import directory
from common.store import clock
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from common.tickets.manual import accept_ticket
from common.tickets.read import get_events, get_ticket
from tests.conftest import ROOT, registered, wait_until

pytestmark = pytest.mark.processes

SHIPPED = ROOT / "config"


def start_bots(processes, conn, db_url, metaservice):
    """The shipped config's bots of a metaservice, sweeping every second (shipped: 30s), so that what a
    shifted clock makes due is seen at once."""
    folder = processes.log_dir / "shipped-config"
    if not folder.exists():
        shutil.copytree(SHIPPED, folder)
        fleet = (folder / "fleet.yaml").read_text()
        assert "  sweep_interval: 30s\n" in fleet
        (folder / "fleet.yaml").write_text(fleet.replace("  sweep_interval: 30s\n", "  sweep_interval: 1s\n"))
    cfg = load(folder)
    sync_config(conn, cfg)
    names = [s.name for s in cfg.bots.values() if s.metaservice == metaservice and not s.final]
    for name in names:
        processes.start(name, folder, db_url)
    wait_until(registered(conn, len(names)), 30, f"the {metaservice} bots to register")
    return cfg


def closed(conn, ticket_id):
    return lambda: get_ticket(conn, ticket_id).closed_at is not None


def test_helpdesk_incidents_wait_for_a_member_to_accept_then_end_resolved_or_rejected(db_url, conn, processes):
    types = start_bots(processes, conn, db_url, "helpdesk")
    directory.add_user(conn, "ann")
    directory.add_group(conn, "support", ["ann"])
    fixed = create_ticket(conn, types, "helpdesk", "incident", {"summary": "printer on fire"})
    refused = create_ticket(conn, types, "helpdesk", "incident", {"reject": True})
    # Nobody is assigned automatically: both wait in `new` until someone accepts.
    wait_until(lambda: all(any(e["kind"] == "waited" for e in get_events(conn, t)) for t in (fixed, refused)), 30,
               "both incidents to wait for acceptance")
    assert [get_ticket(conn, t).state for t in (fixed, refused)] == [1, 1]
    for ticket_id in (fixed, refused):
        accept_ticket(conn, types, ticket_id, "ann")
        wait_until(closed(conn, ticket_id), 30, f"incident {ticket_id} to close")
    assert get_ticket(conn, fixed).state == 4
    assert get_ticket(conn, fixed).assigned_user == "ann"
    assert get_ticket(conn, refused).state == 5


def test_pm_generates_a_work_order_and_learns_done_or_failed(db_url, conn, processes):
    types = start_bots(processes, conn, db_url, "maintenance")
    directory.add_user(conn, "tom")
    directory.add_group(conn, "technicians", ["tom"])
    good = create_ticket(conn, types, "maintenance", "pm", {"task": "oil pump", "every_s": 3600})
    bad = create_ticket(conn, types, "maintenance", "pm", {"task": "replace belt", "fail": True})

    # A work order is a job: the fleet works it, and no technician is asked to accept it.
    for ticket_id in (good, bad):
        wait_until(closed(conn, ticket_id), 30, f"plan {ticket_id} to close")
    assert (get_ticket(conn, good).state, get_ticket(conn, bad).state) == (3, 4)
    orders = {r["parent_id"]: r for r in conn.execute(
        "SELECT parent_id, ticket_type, state FROM tickets WHERE parent_id = ANY(%s)", ([good, bad],)).fetchall()
        if r["ticket_type"] == "work_order"}
    assert (orders[good]["state"], orders[bad]["state"]) == (3, 4)
    assert [n for n in inbox(conn, "tom") if n["kind"] == "acceptance"] == []
    # The plan scheduled its own next run; it waits in 'scheduled' until then.
    [next_run] = conn.execute("SELECT state, payload FROM tickets WHERE parent_id = %s AND ticket_type = 'pm'",
                              (good,)).fetchall()
    assert next_run["state"] == 1 and next_run["payload"]["task"] == "oil pump"


def test_helpdesk_requests_are_done_once_accepted_or_time_out_and_tell_their_requester(db_url, conn, processes):
    types = start_bots(processes, conn, db_url, "helpdesk")
    for name in ("ann", "rita"):
        directory.add_user(conn, name)
    directory.add_group(conn, "support", ["ann"])
    done = create_ticket(conn, types, "helpdesk", "request", {"what": "new laptop"}, creator="rita")
    ignored = create_ticket(conn, types, "helpdesk", "request", {"what": "a plant"}, creator="rita")
    # Support is asked on arrival; once the request waits in `new`, ann accepts one of them.
    wait_until(lambda: len([n for n in inbox(conn, "ann") if n["kind"] == "acceptance"]) == 2, 30, "the first round")
    wait_until(lambda: all(any(e["kind"] == "waited" for e in get_events(conn, t)) for t in (done, ignored)), 30,
               "both requests to wait for acceptance")
    accept_ticket(conn, types, done, "ann")
    wait_until(closed(conn, done), 30, "the accepted request to be done")
    assert (get_ticket(conn, done).state, get_ticket(conn, done).payload["done_by"]) == (3, "ann")
    # The other outlives its 10 minutes: it ends timed_out and rita is told once.
    clock.shift(conn, 11 * 60)
    wait_until(closed(conn, ignored), 30, "the ignored request to time out")
    assert get_ticket(conn, ignored).state == 4
    assert [(n["ticket_id"], n["kind"]) for n in inbox(conn, "rita")] == [(ignored, "timeout")]
    assert [e["kind"] for e in get_events(conn, ignored)][-2:] == ["timeout", "closed"]
