"""A ticket's life by the fleet's clock (shifted, so an hour runs in seconds): acceptance rounds to every
member of its group, reminders to the one who accepted, notifications written with their outcome."""

from types import SimpleNamespace

import pytest

from common.config.builtin import ERROR_TICKET_TYPE
from common.config.load import load
from common.notifications.outbox import inbox
from common.people import directory
from common.store import clock
from common.store.sync import sync_config
from common.tickets.create import create_ticket, create_tickets
from common.tickets.manual import accept_ticket, close_ticket, send_ticket
from common.tickets.read import get_events, get_ticket
from common.tickets.settings import set_type_settings
from common.tickets.timers import send_due_rounds
from tests.conftest import PIPELINE_TYPE, registered, stays_true, wait_until, write_config

pytestmark = pytest.mark.processes

FIRST = "testms-desk-1-new"
WORKING = "testms-desk-2-working"
DESK = """\
description: waits in 1 for a member of its group to accept
lifetime: 60m
notification_frequency: 15m
retention: 1d
group_role: desk
states:
  - {code: 1, name: new}
  - {code: 2, name: working}
  - {code: 3, name: done, final: true}
transitions: [[1, 2], [2, 3]]
"""
MINUTE_S = 60


@pytest.fixture
def desk(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", types={"testms/desk": DESK},
                          bots={FIRST: "handler: tests.handlers:wait_for_acceptance\n",
                                WORKING: "handler: tests.handlers:wait_an_hour\n"})
    cfg = load(folder)
    sync_config(conn, cfg)
    for name in ("ann", "bob", "cid", "zoe"):
        directory.add_user(conn, name)
    directory.add_group(conn, "desk", ["ann", "bob", "cid"])

    def start(name=FIRST):
        return processes.start(name, folder, db_url)
    return cfg, start


def received(conn, kind, ticket_id=None):
    """user -> how many notifications of `kind` they got (about one ticket, if given)."""
    rows = conn.execute("SELECT user_name, count(*) AS n FROM notifications WHERE kind = %s "
                        "AND (%s::bigint IS NULL OR ticket_id = %s) GROUP BY user_name",
                        (kind, ticket_id, ticket_id)).fetchall()
    return {r["user_name"]: r["n"] for r in rows}


def rounds(conn, ticket_id):
    return [e["detail"] for e in get_events(conn, ticket_id) if e["kind"] == "reminder"]


def test_every_member_is_asked_on_arrival_and_each_period_then_the_creator_told_once_at_the_lifetimes_end(desk, conn):
    """The seed's cycle: a group of 3, lifetime 60 min, frequency 15 min, nobody accepts; two replicas of the
    state's bot, one restarted in the middle."""
    cfg, start = desk
    first, _second = start(), start()
    wait_until(registered(conn, 2), 30, "both replicas to register")
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    members = {"ann", "bob", "cid"}
    wait_until(lambda: received(conn, "acceptance") == dict.fromkeys(members, 1), 30, "the round on arrival")
    for minute in (15, 30, 45):
        if minute == 30:  # one replica restarts in the middle; the other and then it carry on
            first.terminate()
            first.wait(15)
            start()
        clock.shift(conn, 15 * MINUTE_S)
        expected = dict.fromkeys(members, minute // 15 + 1)
        wait_until(lambda expected=expected: received(conn, "acceptance") == expected, 30,
                   lambda minute=minute: f"the round of minute {minute}: {received(conn, 'acceptance')}")
    assert [r["to"] for r in rounds(conn, ticket_id)] == [sorted(members)] * 4
    assert all(r["kind"] == "acceptance" for r in rounds(conn, ticket_id))
    # Not one more before the next period, however many sweeps both replicas run.
    stays_true(lambda: received(conn, "acceptance") == dict.fromkeys(members, 4), 3,
               lambda: f"no extra round: {received(conn, 'acceptance')}")
    # Minute 60: the lifetime runs out. The creator gets exactly one out-of-service message, the ticket
    # keeps its state (the type names no on_timeout state) and one error ticket goes to the group.
    clock.shift(conn, 15 * MINUTE_S)
    wait_until(lambda: received(conn, "timeout") == {"zoe": 1}, 30, "the creator's timeout message")
    ticket = get_ticket(conn, ticket_id)
    assert ticket.state == 1 and ticket.waiting_for is not None
    assert get_ticket(conn, ticket.waiting_for).ticket_type == "error"
    clock.shift(conn, 30 * MINUTE_S)
    stays_true(lambda: received(conn, "acceptance", ticket_id) == dict.fromkeys(members, 4)
               and received(conn, "timeout") == {"zoe": 1}, 3,
               lambda: f"nothing after the lifetime: {received(conn, 'acceptance', ticket_id)}, {received(conn, 'timeout')}")
    [timeout_text] = [n["text"] for n in inbox(conn, "zoe")]
    assert timeout_text.startswith(f"Ticket {ticket_id} (testms/desk) was not dealt with within its lifetime of 3600s")
    asked = [n["text"] for n in inbox(conn, "ann") if n["ticket_id"] == ticket_id]
    assert asked[0] == (f"Ticket {ticket_id} (testms/desk, new) waits for someone of group desk to accept it: "
                        f"botfleet ticket accept {ticket_id} ann")
    # The error ticket is the group's to resolve: its members are asked to accept it in turn.
    assert received(conn, "acceptance", ticket.waiting_for) == dict.fromkeys(members, 1)


def test_a_round_due_before_the_deadline_but_not_sent_by_then_is_never_sent_after_it(desk, conn):
    """The fleet was down over a ticket's last round and its deadline: when its bot comes back, the timeout
    comes first, and the missed round is not sent at all."""
    cfg, start = desk
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")  # its first round goes with it
    clock.shift(conn, 61 * MINUTE_S)  # past the rounds of minutes 15, 30, 45 and the deadline at 60
    start()
    wait_until(lambda: received(conn, "timeout") == {"zoe": 1}, 30, "the creator's timeout message")
    stays_true(lambda: received(conn, "acceptance", ticket_id) == dict.fromkeys(("ann", "bob", "cid"), 1), 3,
               lambda: f"no round after the deadline: {received(conn, 'acceptance', ticket_id)}")
    assert len(rounds(conn, ticket_id)) == 1


def test_an_error_tickets_notification_to_its_group_says_what_went_wrong(desk, conn):
    cfg, start = desk
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    clock.shift(conn, 61 * MINUTE_S)
    start()
    wait_until(lambda: get_ticket(conn, ticket_id).waiting_for is not None, 30, "the error ticket")
    error_id = get_ticket(conn, ticket_id).waiting_for
    said = (f"Ticket {error_id} (botfleet/error, open) waits for someone of group desk to accept it: "
            f"botfleet ticket accept {error_id} ann. What went wrong: ticket {ticket_id} (testms/desk) "
            f"in state 1: its lifetime of 3600s ran out in state 1")
    assert [n["text"] for n in inbox(conn, "ann") if n["ticket_id"] == error_id] == [said]
    # The next round (an error ticket's bot, where a fleet runs one) says it again.
    clock.shift(conn, ERROR_TICKET_TYPE.notification_frequency_s)
    error_bot = SimpleNamespace(metaservice="botfleet", ticket_type="error", state=1)
    assert send_due_rounds(conn, error_bot, ERROR_TICKET_TYPE, "test") == 1
    assert [n["text"] for n in inbox(conn, "ann") if n["ticket_id"] == error_id] == [said, said]


def test_without_a_mail_section_a_notification_is_never_pending_mail(desk, conn):
    """Nothing would ever mail it: it is done with at once (inbox only), shown and pruned as such."""
    cfg, _start = desk
    assert cfg.mail is None
    directory.add_user(conn, "ann", email="ann@example.org")
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    states = {r["email_state"] for r in conn.execute("SELECT email_state FROM notifications WHERE ticket_id = %s",
                                                       (ticket_id,)).fetchall()}
    assert states == {"none"}


def test_once_accepted_the_rounds_stop_and_the_assignee_is_reminded_each_period_until_it_closes(desk, conn):
    cfg, start = desk
    start(FIRST)
    start(WORKING)
    wait_until(registered(conn, 2), 30, "the bots to register")
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    members = ("ann", "bob", "cid")
    wait_until(lambda: received(conn, "acceptance") == dict.fromkeys(members, 1), 30, "the first round")
    clock.shift(conn, 20 * MINUTE_S)  # minute 20: the round of minute 15 has gone out
    wait_until(lambda: received(conn, "acceptance") == dict.fromkeys(members, 2), 30, "the round of minute 15")
    accept_ticket(conn, cfg, ticket_id, "bob")
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the accepted ticket to move to working")
    assert get_ticket(conn, ticket_id).assigned_user == "bob"
    for minute, reminders in ((35, 1), (45, 2)):  # rounds were due at minutes 30 and 45
        clock.shift(conn, (10 if minute == 45 else 15) * MINUTE_S)
        wait_until(lambda reminders=reminders: received(conn, "reminder") == {"bob": reminders}, 30,
                   lambda reminders=reminders: f"reminder {reminders}: {received(conn, 'reminder')}")
    assert received(conn, "acceptance") == dict.fromkeys(members, 2)  # no acceptance round once accepted
    assert [r["kind"] for r in rounds(conn, ticket_id)] == ["acceptance", "acceptance", "reminder", "reminder"]
    close_ticket(conn, cfg, ticket_id, "done by hand")
    clock.shift(conn, 15 * MINUTE_S)
    stays_true(lambda: received(conn, "reminder") == {"bob": 2}, 3, "no reminder for a closed ticket")


def test_a_notification_is_written_with_its_outcome_and_only_then(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:notify_creator\n"},
                          bot_defaults={"retries": 0})
    cfg = load(folder)
    sync_config(conn, cfg)
    directory.add_user(conn, "zoe")
    processes.start("testms-pipe-1-first", folder, db_url)
    told = create_ticket(conn, cfg, "testms", "pipe", {}, creator="zoe")
    nobody = create_ticket(conn, cfg, "testms", "pipe", {}, creator="ghost")
    wait_until(lambda: get_ticket(conn, told).state == 2, 30, "the ticket to move on")
    assert [(n["ticket_id"], n["kind"], n["text"]) for n in inbox(conn, "zoe")] == [(told, "message", f"ticket {told} moved on")]
    # A notification to nobody is that step's failure: the ticket stays, nothing is half-written.
    wait_until(lambda: any(e["kind"] == "escalated" for e in get_events(conn, nobody)), 30, "the step to fail")
    assert get_ticket(conn, nobody).state == 1
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE ticket_id = %s", (nobody,)).fetchone()["n"] == 0


def test_an_operators_override_of_lifetime_and_frequency_reaches_the_running_bots(desk, conn):
    cfg, start = desk
    start()
    wait_until(registered(conn, 1), 30, "the bot to register")
    key = ("testms", "desk")
    before = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    row = set_type_settings(conn, cfg, key, lifetime="20m", notification_frequency="5m")
    assert (row["effective_lifetime_s"], row["effective_notification_frequency_s"], row["lifetime_s"]) == (1200, 300, 3600)
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    # The open ticket's lifetime is 20 minutes now too, counted from its creation.
    assert (get_ticket(conn, before).deadline_at - get_ticket(conn, before).created_at).total_seconds() == 1200
    for minute in (5, 10, 15):  # the bot, started before the override, sends a round every 5 minutes
        clock.shift(conn, 5 * MINUTE_S)
        wait_until(lambda minute=minute: received(conn, "acceptance", ticket_id).get("ann") == minute // 5 + 1, 30,
                   lambda minute=minute: f"the round of minute {minute}: {received(conn, 'acceptance', ticket_id)}")
    clock.shift(conn, 5 * MINUTE_S)  # minute 20: both time out under the new lifetime
    wait_until(lambda: received(conn, "timeout") == {"zoe": 2}, 30, "both tickets to time out at 20 minutes")
    row = set_type_settings(conn, cfg, key, lifetime=None, notification_frequency=None)
    assert (row["effective_lifetime_s"], row["lifetime_override_s"]) == (3600, None)


@pytest.mark.parametrize("on_retention", ["delete", "archive"])
def test_a_final_states_bot_removes_tickets_closed_longer_than_the_retention_and_keeps_younger_ones(
        tmp_path, db_url, conn, processes, on_retention):
    kept_type = PIPELINE_TYPE + f"on_retention: {on_retention}\n"  # closed tickets are kept a day
    folder = write_config(tmp_path / "config", types={"testms/pipe": kept_type})
    cfg = load(folder)
    sync_config(conn, cfg)
    old = create_tickets(conn, cfg, "testms", "pipe", [{"n": n} for n in range(2500)])
    for ticket_id in old[:3]:
        close_ticket(conn, cfg, ticket_id, "done")
    conn.execute("UPDATE tickets SET state = 4, closed_at = botfleet_now(), step = step + 1 WHERE closed_at IS NULL")
    clock.shift(conn, 2 * 86400)  # two days: past the one-day retention
    young = create_ticket(conn, cfg, "testms", "pipe", {})
    conn.execute("UPDATE tickets SET state = 4, closed_at = botfleet_now() WHERE id = %s", (young,))
    history = conn.execute("SELECT count(*) AS n FROM ticket_events WHERE ticket_id = ANY(%s)", (old,)).fetchone()["n"]
    processes.start("testms-pipe-4-done", folder, db_url)
    processes.start("testms-pipe-1-first", folder, db_url)  # it clears the three closed by hand in state 1
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 1, 60,
               "the old closed tickets to be removed")
    assert get_ticket(conn, young).closed_at is not None  # younger than the retention: kept
    assert conn.execute("SELECT count(*) AS n FROM ticket_events WHERE ticket_id = ANY(%s)", (old,)).fetchone()["n"] == 0
    archived = conn.execute("SELECT count(*) AS n FROM tickets_archive").fetchone()["n"]
    archived_events = conn.execute("SELECT count(*) AS n FROM ticket_events_archive").fetchone()["n"]
    assert (archived, archived_events) == ((2500, history) if on_retention == "archive" else (0, 0))
    if on_retention == "archive":
        row = conn.execute("SELECT row FROM tickets_archive WHERE id = %s", (old[7],)).fetchone()["row"]
        assert (row["payload"], row["state"]) == ({"n": 7}, 4)


def desk_with_first_bot(tmp_path, db_url, conn, processes, handler, replicas=1):
    """The desk type, ann in its group and zoe to create, and `replicas` processes of its first state's bot
    running `handler` (the working state's waits an hour)."""
    folder = write_config(tmp_path / "config", types={"testms/desk": DESK},
                          bots={FIRST: f"handler: {handler}\n", WORKING: "handler: tests.handlers:wait_an_hour\n"})
    cfg = load(folder)
    sync_config(conn, cfg)
    for name in ("ann", "zoe"):
        directory.add_user(conn, name)
    directory.add_group(conn, "desk", ["ann"])
    for _ in range(replicas):
        processes.start(FIRST, folder, db_url)
    wait_until(registered(conn, replicas), 30, "the first state's bot to register")
    return cfg


def test_a_types_own_timeout_handler_decides_once_and_one_that_fails_gets_the_default(tmp_path, db_url, conn,
                                                                                       processes):
    cfg = desk_with_first_bot(tmp_path, db_url, conn, processes, "tests.timeout_handlers:wait_for_acceptance", 2)
    modes = ("own", "default", "raise", "nonsense")
    ids = dict(zip(modes, create_tickets(conn, cfg, "testms", "desk", [{"on_timeout": mode} for mode in modes],
                                         creator="zoe"), strict=True))
    clock.shift(conn, 61 * MINUTE_S)

    def timed_out():
        return {mode: conn.execute("SELECT timed_out_at IS NOT NULL AS done FROM tickets WHERE id = %s",
                                   (ticket_id,)).fetchone()["done"] for mode, ticket_id in ids.items()}
    wait_until(lambda: all(timed_out().values()), 30, lambda: f"every ticket timed out: {timed_out()}")
    clock.shift(conn, 60 * MINUTE_S)
    stays_true(lambda: received(conn, "timeout") == {"zoe": 4}, 3,
               lambda: f"one out-of-service message for each ticket, the own handler's too: {received(conn, 'timeout')}")

    own = get_ticket(conn, ids["own"])  # its handler's outcome, its payload change and its message
    assert own.state == 2 and own.payload["handed_over"] is True and own.waiting_for is None
    assert [(n["kind"], n["text"]) for n in reversed(inbox(conn, "zoe")) if n["ticket_id"] == ids["own"]] == [
        ("message", f"ticket {ids['own']}: handed to the night shift"),
        ("timeout", f"Ticket {ids['own']} (testms/desk) was not dealt with within its lifetime of 3600s and is out "
                    f"of service: it is now working")]
    # Its move is recorded as a timeout, as the default's is.
    [moved] = [e for e in get_events(conn, ids["own"]) if e["from_state"] == 1 and e["to_state"] == 2]
    assert (moved["kind"], moved["detail"]) == ("timeout", {"lifetime_s": 3600})
    default = get_ticket(conn, ids["default"])  # the built-in timeout, plus what the handler sent
    assert default.state == 1 and get_ticket(conn, default.waiting_for).ticket_type == "error"
    assert [n["text"] for n in inbox(conn, "ann") if n["ticket_id"] == ids["default"] and n["kind"] == "message"] == [
        f"ticket {ids['default']} timed out; the default applies"]
    for mode, error in (("raise", "RuntimeError: the night shift's roster is unreachable"),
                        ("nonsense", "TypeError: handler returned 'not an outcome'")):
        ticket = get_ticket(conn, ids[mode])  # the default, with why the type's handler did not decide
        assert ticket.state == 1 and get_ticket(conn, ticket.waiting_for).ticket_type == "error"
        [event] = [e for e in get_events(conn, ids[mode]) if e["detail"] and "ticket_timeout_error" in e["detail"]]
        assert event["detail"]["ticket_timeout_error"].startswith(error)
    for ticket_id in ids.values():  # one timeout step each, whatever the replicas and sweeps
        assert sum(e["kind"] in ("timeout", "escalated", "transitioned") for e in get_events(conn, ticket_id)) == 1, \
            get_events(conn, ticket_id)


def open_error_tickets(conn, ticket_id):
    return conn.execute("SELECT id, payload FROM tickets WHERE parent_id = %s AND ticket_type = 'error' "
                        "AND closed_at IS NULL ORDER BY id", (ticket_id,)).fetchall()


def test_a_ticket_parked_on_its_error_ticket_keeps_that_one_when_its_lifetime_runs_out_and_resolving_it_retries(
        tmp_path, db_url, conn, processes):
    cfg = desk_with_first_bot(tmp_path, db_url, conn, processes, "tests.handlers:fail_until_woken")
    ticket_id = create_ticket(conn, cfg, "testms", "desk", {}, creator="zoe")
    wait_until(lambda: get_ticket(conn, ticket_id).waiting_for is not None, 30, "the ticket to park on an error ticket")
    first = get_ticket(conn, ticket_id).waiting_for
    clock.shift(conn, 61 * MINUTE_S)  # its lifetime runs out while it is parked
    wait_until(lambda: received(conn, "timeout") == {"zoe": 1}, 30, "the creator's timeout message")
    stays_true(lambda: [r["id"] for r in open_error_tickets(conn, ticket_id)] == [first], 2,
               lambda: f"still one open error ticket: {open_error_tickets(conn, ticket_id)}")
    [error] = open_error_tickets(conn, ticket_id)
    assert error["payload"]["reason"] == "needs a person"
    assert error["payload"]["reasons"] == ["needs a person", "its lifetime of 3600s ran out in state 1"]
    assert get_ticket(conn, ticket_id).waiting_for == first
    send_ticket(conn, cfg, first, actor="ann")  # resolved: the ticket's bot tries again, and it moves on
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the ticket's bot to try again")
    assert open_error_tickets(conn, ticket_id) == []
