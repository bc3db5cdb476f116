"""People: users and groups, acceptance by a member, and no assignee from outside the ticket's group."""

import subprocess

import pytest

from common.config.load import load
from common.errors import AssigneeRefused, BotfleetError
from common.people import directory
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from common.tickets.manual import accept_ticket, set_assigned_user
from common.tickets.read import get_events, get_ticket
from tests.conftest import BOTFLEET, ROOT, wait_until, write_config
from tests.harness import child_env


@pytest.fixture
def testers(conn):
    for name in ("ann", "bob", "eve"):
        directory.add_user(conn, name, email=f"{name}@example.org")
    directory.add_group(conn, "testers", ["ann", "bob"])  # the pipe type's group_role
    directory.add_group(conn, "others", ["eve"])


def events_of(conn, ticket_id, kind):
    return [e for e in get_events(conn, ticket_id) if e["kind"] == kind]


def test_a_user_outside_the_tickets_group_is_refused_and_nothing_changes(conn, synced, testers):
    ticket_id = create_ticket(conn, synced, "testms", "pipe", {})
    before = (get_ticket(conn, ticket_id), get_events(conn, ticket_id))
    for user, why in (("eve", "user eve is not a member of group testers"), ("nobody", "no user named 'nobody'")):
        with pytest.raises(AssigneeRefused, match=why):
            set_assigned_user(conn, synced, ticket_id, user)
    assert (get_ticket(conn, ticket_id), get_events(conn, ticket_id)) == before
    assert set_assigned_user(conn, synced, ticket_id, "bob").assigned_user == "bob"


def test_a_member_accepts_and_becomes_the_assignee_and_a_second_member_cannot(conn, synced, testers):
    ticket_id = create_ticket(conn, synced, "testms", "pipe", {})
    assert accept_ticket(conn, synced, ticket_id, "ann").assigned_user == "ann"
    [accepted] = events_of(conn, ticket_id, "accepted")
    assert (accepted["actor"], accepted["detail"]) == ("ann", {"user": "ann"})
    assert events_of(conn, ticket_id, "assigned") == []
    with pytest.raises(BotfleetError, match="already accepted by ann"):
        accept_ticket(conn, synced, ticket_id, "bob")
    with pytest.raises(AssigneeRefused, match="not a member of group testers"):
        accept_ticket(conn, synced, create_ticket(conn, synced, "testms", "pipe", {}), "eve")


def test_a_ticket_created_for_another_group_goes_to_that_groups_members(conn, synced, testers):
    ticket_id = create_ticket(conn, synced, "testms", "pipe", {}, group_role="others")
    with pytest.raises(AssigneeRefused):
        accept_ticket(conn, synced, ticket_id, "ann")
    assert accept_ticket(conn, synced, ticket_id, "eve").assigned_user == "eve"


@pytest.mark.processes
def test_a_handler_assigning_a_non_member_fails_its_step_and_a_member_is_accepted(tmp_path, db_url, conn, testers,
                                                                                   processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:assign_from_payload\n"},
                          bot_defaults={"retries": 0})
    cfg = load(folder)
    sync_config(conn, cfg)
    processes.start("testms-pipe-1-first", folder, db_url)
    outsider = create_ticket(conn, cfg, "testms", "pipe", {"assign": "eve"})
    member = create_ticket(conn, cfg, "testms", "pipe", {"accept": "bob"})
    wait_until(lambda: get_ticket(conn, member).state == 2, 30, "the member's acceptance to be written")
    assert get_ticket(conn, member).assigned_user == "bob" and len(events_of(conn, member, "accepted")) == 1
    wait_until(lambda: events_of(conn, outsider, "escalated"), 30, "the outsider's step to fail")
    [escalated] = events_of(conn, outsider, "escalated")  # no retries here: the failure escalates at once
    assert "user eve is not a member of group testers" in escalated["detail"]["reason"]
    ticket = get_ticket(conn, outsider)
    assert (ticket.state, ticket.assigned_user) == (1, None)


def botfleet(db_url, *args):
    return subprocess.run([*BOTFLEET, "--config", str(ROOT / "config"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=child_env(db_url))


def test_cli_users_and_groups_and_bad_input_named(db_url, conn):
    assert botfleet(db_url, "user", "add", "ann", "--email", "ann@example.org", "--window", "08:00-18:00",
                    "--tz", "Europe/Berlin").returncode == 0
    bad = botfleet(db_url, "user", "add", "bob", "--tz", "Mars/Olympus")
    assert bad.returncode == 1 and "time zone 'Mars/Olympus' of user bob is unknown" in bad.stderr
    bad = botfleet(db_url, "user", "add", "bob", "--window", "25:00-18:00")
    assert bad.returncode == 1 and "delivery window '25:00-18:00' must be HH:MM-HH:MM" in bad.stderr
    bad = botfleet(db_url, "group", "add", "support", "--member", "ann", "--member", "zed")
    assert bad.returncode == 1 and "no user named zed" in bad.stderr
    assert directory.list_groups(conn) == []  # nothing half-written
    assert botfleet(db_url, "group", "add", "support", "--member", "ann").returncode == 0
    listed = botfleet(db_url, "group", "list")
    assert listed.stdout.split() == ["support", "ann"]
    assert botfleet(db_url, "user", "remove", "ann").returncode == 0
    assert directory.list_groups(conn) == [{"name": "support", "members": []}]


def test_db_upgrade_creates_the_people_of_fleet_yaml_once_and_leaves_later_changes_alone(conn):
    from common.store.sync import sync_config

    cfg = load(ROOT / "config")
    sync_config(conn, cfg)
    assert {g["name"]: g["members"] for g in directory.list_groups(conn)}["support"] == ["ann", "bob", "cid"]
    directory.remove_group(conn, "support", ["cid"])
    directory.add_user(conn, "ann", email="ann@elsewhere.org")
    sync_config(conn, cfg)  # again: what exists is left as it is
    assert {g["name"]: g["members"] for g in directory.list_groups(conn)}["support"] == ["ann", "bob"]
    users = {u["name"]: u for u in directory.list_users(conn)}
    assert users["ann"]["email"] == "ann@elsewhere.org"


def test_cli_type_set_and_show_and_bad_input_named(db_url, conn):
    from common.store.sync import sync_config

    sync_config(conn, load(ROOT / "config"))
    shown = botfleet(db_url, "type", "set", "helpdesk/incident", "--lifetime", "3h")
    assert shown.returncode == 0 and "lifetime 3h (overridden; YAML 2h)" in shown.stdout, shown.stderr
    bad = botfleet(db_url, "type", "set", "helpdesk/incident", "--lifetime", "soon")
    assert bad.returncode == 1 and "--lifetime: bad duration 'soon'" in bad.stderr
    bad = botfleet(db_url, "type", "set", "helpdesk/nothing", "--lifetime", "1h")
    assert bad.returncode == 1 and "unknown ticket type helpdesk/nothing" in bad.stderr
    assert "lifetime 3h " in botfleet(db_url, "type", "show", "helpdesk/incident").stdout
    assert botfleet(db_url, "type", "set", "helpdesk/incident", "--reset").returncode == 0
    assert "lifetime 2h " in botfleet(db_url, "type", "show", "helpdesk/incident").stdout
