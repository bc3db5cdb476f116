"""Notifications mailed by the built-in bot botfleet-mail-1-deliver, against a real SMTP server (aiosmtpd):
delivered; held until the user's delivery window opens; refused, tried again, then undeliverable with
one error ticket for the operators, and never dropped. A server that never answers neither makes the bot
look hung nor holds a transaction open; a mail sent whose mark was lost is not sent again within its lease."""

import email.policy
import os
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from email import message_from_string
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.controller import Controller

from bots.mail import MailDuty
from common.config.builtin import MAIL_BOT
from common.config.load import load
from common.fleet import status
from common.notifications.outbox import inbox, send_user_notification
from common.people import directory
from common.store import clock
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from common.tickets.manual import accept_ticket, close_ticket
from common.tickets.read import get_ticket
from tests.conftest import BOTFLEET, ROOT, free_port, last_event_id, registered, stays_true, wait_until, write_config
from tests.liveness import SilentServer, heartbeat_age_s, idle_in_transaction_s
from watchdog.collector import scrape_text

pytestmark = pytest.mark.processes


class Mailbox:
    """An aiosmtpd handler that keeps what it receives, or refuses every recipient. `on_first_message` runs
    once a message has been received, before the server says it was."""

    def __init__(self, refuse=False, on_first_message=None):
        self.refuse = refuse
        self.received = []
        self.on_first_message = on_first_message

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.rcpt_tos, envelope.content.decode(errors="replace")))
        if self.on_first_message is not None:
            self.on_first_message, hook = None, self.on_first_message
            hook()
        return "250 Message accepted"


@pytest.fixture
def smtp():
    servers = []

    def start(refuse=False, port=None, on_first_message=None):
        mailbox = Mailbox(refuse, on_first_message)
        controller = Controller(mailbox, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        servers.append(controller)
        return mailbox, controller.port
    yield start
    for controller in servers:
        controller.stop()


def mail_fleet(tmp_path, db_url, conn, processes, port, max_tries=3, retry_backoff="200ms", **config):
    folder = write_config(tmp_path / "config", **config, fleet_extra=(
        f"mail:\n  host: 127.0.0.1\n  port: {port}\n  max_tries: {max_tries}\n  retry_backoff: {retry_backoff}\n"
        f"  operators_group: ops\n  from: fleet@example.org\n"))
    cfg = load(folder)
    sync_config(conn, cfg)
    directory.add_user(conn, "ann", email="ann@example.org")
    directory.add_user(conn, "oscar")
    directory.add_group(conn, "ops", ["oscar"])
    processes.start(MAIL_BOT, folder, db_url)
    wait_until(registered(conn, 1), 30, "the mail bot to register")
    return cfg


def state_of(conn, notification_id):
    return conn.execute("SELECT email_state, email_attempts, email_error FROM notifications WHERE id = %s",
                        (notification_id,)).fetchone()


def test_a_notification_is_mailed_and_marked_sent(tmp_path, db_url, conn, processes, smtp):
    mailbox, port = smtp()
    mail_fleet(tmp_path, db_url, conn, processes, port)
    sent = send_user_notification(conn, None, "ann", "the printer is on fire")
    wait_until(lambda: mailbox.received, 30, "the mail to arrive")
    [(recipients, content)] = mailbox.received
    assert recipients == ["ann@example.org"] and "the printer is on fire" in content
    assert "From: fleet@example.org" in content
    wait_until(lambda: state_of(conn, sent)["email_state"] == "sent", 10, "the notification to be marked sent")


def test_a_mail_carries_a_date_and_a_message_id_of_its_own(tmp_path, db_url, conn, processes, smtp):
    mailbox, port = smtp()
    mail_fleet(tmp_path, db_url, conn, processes, port)
    before = datetime.now(UTC).replace(microsecond=0)
    ids = [send_user_notification(conn, None, "ann", text) for text in ("one", "two")]
    wait_until(lambda: len(mailbox.received) == 2, 30, "both mails to arrive")
    messages = [message_from_string(content, policy=email.policy.default) for _, content in mailbox.received]
    for message in messages:
        assert before - timedelta(seconds=5) <= parsedate_to_datetime(message["Date"]) <= datetime.now(UTC), message["Date"]
    message_ids = [message["Message-ID"].strip() for message in messages]  # a long one is folded
    assert all(re.fullmatch(r"<[^<>@\s]+@example\.org>", m) for m in message_ids), message_ids  # the sender's domain
    # Each names its notification.
    assert sorted(int(re.search(r"\.notification-(\d+)@", m)[1]) for m in message_ids) == sorted(ids), message_ids


def test_mail_waits_for_the_users_delivery_window(tmp_path, db_url, conn, processes, smtp):
    mailbox, port = smtp()
    mail_fleet(tmp_path, db_url, conn, processes, port)
    opens = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    directory.add_user(conn, "ann", email="ann@example.org",
                       window=f"{opens:%H:%M}-{opens + timedelta(hours=1):%H:%M}", tz="UTC")
    held = send_user_notification(conn, None, "ann", "not now")
    due = lambda: conn.execute("SELECT email_due_at FROM notifications WHERE id = %s", (held,)).fetchone()["email_due_at"]  # noqa: E731
    wait_until(lambda: due() == opens, 30, lambda: f"the mail to wait for the window at {opens} (due {due()})")
    assert mailbox.received == [] and state_of(conn, held)["email_state"] == "pending"
    clock.shift(conn, (opens - clock.now(conn)).total_seconds() + 60)
    wait_until(lambda: mailbox.received, 30, "the mail to go out once the window is open")
    wait_until(lambda: state_of(conn, held)["email_state"] == "sent", 10, "the mail to be marked sent")


def test_refused_mail_is_tried_again_then_undeliverable_with_one_error_ticket_and_never_dropped(
        tmp_path, db_url, conn, processes, smtp):
    mailbox, port = smtp(refuse=True)
    mail_fleet(tmp_path, db_url, conn, processes, port)
    refused = send_user_notification(conn, None, "ann", "you will not get this")
    wait_until(lambda: state_of(conn, refused)["email_state"] == "undeliverable", 30,
               lambda: f"the mail to be given up: {state_of(conn, refused)}")
    row = state_of(conn, refused)
    assert row["email_attempts"] == 3 and "550" in row["email_error"]
    errors = conn.execute("SELECT group_role, payload FROM tickets WHERE ticket_type = 'error'").fetchall()
    assert len(errors) == 1 and errors[0]["group_role"] == "ops"
    assert errors[0]["payload"]["notification_id"] == refused
    # What the operators are told says what went wrong.
    [asked] = inbox(conn, "oscar")
    assert asked["text"].endswith(f". What went wrong: notification {refused} to ann <ann@example.org> is undeliverable "
                                  f"after 3 tries: {row['email_error']}"), asked["text"]
    # The inbox keeps it, with what happened to the mail.
    [item] = inbox(conn, "ann")
    assert (item["id"], item["email_state"], item["email_attempts"]) == (refused, "undeliverable", 3)


def test_mail_problems_while_the_server_refuses_go_to_one_open_error_ticket_not_one_each(
        tmp_path, db_url, conn, processes, smtp):
    """The operators have addresses too: the error ticket's own acceptance mail fails as well, and must not
    raise another error ticket, which would raise another, as long as the server refuses."""
    mailbox, port = smtp(refuse=True)
    cfg = mail_fleet(tmp_path, db_url, conn, processes, port)
    directory.add_user(conn, "oscar", email="oscar@example.org")
    first = send_user_notification(conn, None, "ann", "one")
    wait_until(lambda: state_of(conn, first)["email_state"] == "undeliverable", 30, "the first mail to be given up")
    later = [send_user_notification(conn, None, "ann", text) for text in ("two", "three")]

    def error_tickets():
        return conn.execute("SELECT id, payload, closed_at FROM tickets WHERE ticket_type = 'error' ORDER BY id"
                            ).fetchall()
    # ann's three, and oscar's acceptance mail for the error ticket itself.
    wait_until(lambda: [t["payload"]["problems"] for t in error_tickets()] == [4], 30,
               lambda: f"one error ticket counting four problems: {[t['payload'] for t in error_tickets()]}")
    stays_true(lambda: len(error_tickets()) == 1 and error_tickets()[0]["payload"]["problems"] == 4, 3,
               lambda: f"no more error tickets: {[t['payload'] for t in error_tickets()]}")
    [ticket] = error_tickets()
    assert ticket["payload"]["notification_id"] == first and ticket["payload"]["last_reason"].startswith("notification ")
    assert all(state_of(conn, n)["email_state"] == "undeliverable" for n in later)
    # Once an operator resolves it, the next problem opens a new one.
    close_ticket(conn, cfg, ticket["id"], "mail server fixed, we thought")
    again = send_user_notification(conn, None, "ann", "four")
    wait_until(lambda: len(error_tickets()) == 2, 30, "a new error ticket for the next problem")
    assert error_tickets()[1]["payload"]["notification_id"] == again


def test_mail_pending_past_stuck_after_is_reported_to_the_operators_once_and_shown_in_status_and_metrics(
        tmp_path, db_url, conn, processes):
    # Nothing listens on that port: every try fails, and the next one is an hour later.
    cfg = mail_fleet(tmp_path, db_url, conn, processes, free_port(), max_tries=100, retry_backoff="1h")
    waiting = send_user_notification(conn, None, "ann", "stuck in the queue")
    wait_until(lambda: state_of(conn, waiting)["email_attempts"] >= 1, 30, "a first failed try")
    report = status.collect(conn, cfg)["mail"]
    assert report == {"pending": 1, "retrying": 1}
    metrics = scrape_text(db_url)
    assert "botfleet_mail_pending 1.0" in metrics and "botfleet_mail_retrying 1.0" in metrics
    clock.shift(conn, 2 * 3600)  # past the default stuck_after (1h) and far past every backoff
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE ticket_type = 'error'").fetchone()["n"] >= 1,
               30, "the stuck mail to be reported")
    errors = conn.execute("SELECT payload FROM tickets WHERE ticket_type = 'error'").fetchall()
    assert [e["payload"]["notification_id"] for e in errors] == [waiting]
    assert f"notification {waiting} to ann has waited" in errors[0]["payload"]["reason"]
    assert state_of(conn, waiting)["email_state"] == "pending"  # reported, not given up: it is still tried
    stays_true(lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE ticket_type = 'error'").fetchone()["n"] == 1,
               2, "one report, however many sweeps")


def error_tickets(conn) -> list:
    return conn.execute("SELECT payload FROM tickets WHERE ticket_type = 'error' ORDER BY id").fetchall()


def window_in_2_to_3_hours():
    """A delivery window of one hour, opening on the hour between 2 and 3 hours from now (UTC)."""
    opens = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    return opens, f"{opens:%H:%M}-{opens + timedelta(hours=1):%H:%M}"


def test_mail_held_for_a_window_is_not_stuck_and_counts_as_stuck_only_from_the_windows_opening(
        tmp_path, db_url, conn, processes):
    # Nothing listens on that port: every try fails, and the next one is an hour later.
    mail_fleet(tmp_path, db_url, conn, processes, free_port(), max_tries=100, retry_backoff="1h")
    opens, window = window_in_2_to_3_hours()
    directory.add_user(conn, "ann", email="ann@example.org", window=window, tz="UTC")
    held = send_user_notification(conn, None, "ann", "for the morning")
    due = lambda: conn.execute("SELECT email_due_at FROM notifications WHERE id = %s", (held,)).fetchone()["email_due_at"]  # noqa: E731
    wait_until(lambda: due() == opens, 30, lambda: f"the mail to wait for the window at {opens} (due {due()})")
    # Over the night: more than the default stuck_after (1h) after it was written, and it is only waiting.
    clock.shift(conn, (opens - clock.now(conn)).total_seconds() - 600)
    stays_true(lambda: error_tickets(conn) == [], 3, lambda: f"no report of held mail: {error_tickets(conn)}")
    # The window opens and the server is down: sendable from now on.
    clock.shift(conn, 660)
    wait_until(lambda: state_of(conn, held)["email_attempts"] == 1, 30, "a first failed try in the window")
    clock.shift(conn, 1800)
    stays_true(lambda: error_tickets(conn) == [], 2, lambda: f"no report 31 minutes after the opening: {error_tickets(conn)}")
    clock.shift(conn, 1800)
    wait_until(lambda: error_tickets(conn), 30, "the mail to be reported stuck an hour after the window opened")
    [error] = error_tickets(conn)
    assert error["payload"]["notification_id"] == held
    waited_s = int(error["payload"]["reason"].split(" has waited ")[1].split("s")[0])
    assert 3600 <= waited_s < 3600 + 300, error["payload"]["reason"]  # from the opening, not from its writing


DESK = """\
lifetime: 10h
notification_frequency: 15m
retention: 1d
group_role: desk
states: [{code: 1, name: new}, {code: 2, name: working}, {code: 3, name: done, final: true}]
transitions: [[1, 2], [2, 3]]
"""
BRIEF = """\
lifetime: 30m
notification_frequency: 15m
retention: 1d
group_role: desk
states: [{code: 1, name: new}, {code: 2, name: done, final: true}]
transitions: [[1, 2]]
"""
ROUND_BOTS = {"testms-desk-1-new": "handler: tests.handlers:wait_for_acceptance\n",
              "testms-desk-2-working": "handler: tests.handlers:wait_an_hour\n",
              "testms-brief-1-new": "handler: tests.handlers:wait_for_acceptance\n"}


def mails_by_subject(mailbox) -> dict:
    """recipient -> the subjects of the mails they received, in order."""
    received = {}
    for recipients, content in mailbox.received:
        subject = message_from_string(content, policy=email.policy.default)["Subject"]
        for recipient in recipients:
            received.setdefault(recipient, []).append(subject)
    return received


def mail_states(conn, ticket_id) -> dict:
    """user -> [(kind, email_state, email_note)] of their notifications about the ticket, oldest first."""
    rows = conn.execute("SELECT user_name, kind, email_state, email_note FROM notifications WHERE ticket_id = %s "
                        "ORDER BY id", (ticket_id,)).fetchall()
    states = {}
    for row in rows:
        states.setdefault(row["user_name"], []).append((row["kind"], row["email_state"], row["email_note"]))
    return states


def test_the_rounds_a_window_held_go_as_one_mail_per_ticket_and_user_and_those_whose_reason_is_gone_are_dropped(
        tmp_path, db_url, conn, processes, smtp):
    """A night of 15-minute rounds for four tickets: one nobody accepts, one bob accepts (then reminded), one
    closed, one timed out. When the window opens: one mail per ticket and user, and none whose reason is gone."""
    mailbox, port = smtp()
    cfg = mail_fleet(tmp_path, db_url, conn, processes, port, types={"testms/desk": DESK, "testms/brief": BRIEF},
                     bots=ROUND_BOTS)
    opens, window = window_in_2_to_3_hours()
    for name in ("ann", "bob"):
        directory.add_user(conn, name, email=f"{name}@example.org", window=window, tz="UTC")
    directory.add_group(conn, "desk", ["ann", "bob"])
    round_bots = [processes.start(bot, cfg.root, db_url) for bot in ROUND_BOTS]
    wait_until(registered(conn, 1 + len(round_bots)), 30, "the bots to register")
    waiting, accepted, closed = (create_ticket(conn, cfg, "testms", "desk", {}) for _ in range(3))
    timed_out = create_ticket(conn, cfg, "testms", "brief", {})

    def rounds_of(ticket_id):
        return conn.execute("SELECT count(*) AS n FROM ticket_events WHERE ticket_id = %s AND kind = 'reminder'",
                            (ticket_id,)).fetchone()["n"]
    steps = 0
    while clock.now(conn) + timedelta(minutes=15) < opens:
        clock.shift(conn, 15 * 60)
        steps += 1
        wait_until(lambda n=steps + 1: rounds_of(waiting) == n and rounds_of(accepted) == n, 30,
                   lambda n=steps + 1: f"round {n}: {rounds_of(waiting)}, {rounds_of(accepted)}")
        if steps == 1:
            accept_ticket(conn, cfg, accepted, "bob")
            close_ticket(conn, cfg, closed, "withdrawn")
    wait_until(lambda: get_ticket(conn, timed_out).waiting_for is not None, 30, "the brief ticket to time out")
    error = get_ticket(conn, timed_out).waiting_for
    assert steps >= 7 and mailbox.received == []  # all held for the window
    for bot in round_bots:  # no round of the morning mixes in with what the night held
        bot.terminate()
        bot.wait(15)

    clock.shift(conn, (opens - clock.now(conn)).total_seconds() + 60)
    pending = lambda: conn.execute("SELECT count(*) AS n FROM notifications WHERE email_state = 'pending'").fetchone()["n"]  # noqa: E731
    wait_until(lambda: pending() == 0, 30, lambda: f"the window's mail to be done with ({pending()} pending)")
    stays_true(lambda: sum(map(len, mails_by_subject(mailbox).values())) == 5, 2, lambda: mails_by_subject(mailbox))
    assert {user: sorted(subjects) for user, subjects in mails_by_subject(mailbox).items()} == {
        "ann@example.org": sorted([f"[botfleet] acceptance: ticket {waiting}", f"[botfleet] acceptance: ticket {error}"]),
        "bob@example.org": sorted([f"[botfleet] acceptance: ticket {waiting}", f"[botfleet] reminder: ticket {accepted}",
                                   f"[botfleet] acceptance: ticket {error}"])}

    # The night's rounds of the waiting ticket: all but the last merged into it.
    for user in ("ann", "bob"):
        rounds = mail_states(conn, waiting)[user]
        last_id = conn.execute("SELECT max(id) AS id FROM notifications WHERE ticket_id = %s AND user_name = %s",
                               (waiting, user)).fetchone()["id"]
        assert len(rounds) == steps + 1 and rounds[-1] == ("acceptance", "sent", None)
        assert set(rounds[:-1]) == {("acceptance", "merged", f"not mailed: notification {last_id} went instead")}
    # Accepted by bob: nobody is asked any more; bob is reminded, once.
    accepted_mail = mail_states(conn, accepted)
    gone = f"not mailed: ticket {accepted} was accepted by bob"
    assert set(accepted_mail["ann"]) == {("acceptance", "dropped", gone)}
    assert {m for m in accepted_mail["bob"] if m[0] == "acceptance"} == {("acceptance", "dropped", gone)}
    reminders = [m for m in accepted_mail["bob"] if m[0] == "reminder"]
    assert len(reminders) >= 2 and reminders[-1][1] == "sent" and {m[1] for m in reminders[:-1]} == {"merged"}
    for ticket_id, why in ((closed, "was closed"), (timed_out, "timed out")):
        assert {m for user in ("ann", "bob") for m in mail_states(conn, ticket_id)[user]} == {
            ("acceptance", "dropped", f"not mailed: ticket {ticket_id} {why}")}
    # The inbox keeps them all, with what became of their mail.
    shown = {(item["ticket_id"], item["email_state"], item["email_note"]) for item in inbox(conn, "ann", include_read=True)}
    assert (closed, "dropped", f"not mailed: ticket {closed} was closed") in shown
    listed = subprocess.run([*BOTFLEET, "--config", str(cfg.root), "inbox", "ann", "--all"], cwd=ROOT, text=True,
                            env={**os.environ, "DATABASE_URL": db_url}, capture_output=True, timeout=60, check=True).stdout
    assert f"(not mailed: ticket {closed} was closed)" in listed and "(mailed)" in listed, listed


def test_mail_of_a_user_whose_address_is_gone_is_done_with_and_leaves_nothing_due(tmp_path, conn):
    """Removed, or the address cleared, after the mail was written: no longer mailed (and not due for ever,
    which would turn the bot's loop without end)."""
    folder = write_config(tmp_path / "config", fleet_extra="mail:\n  host: 127.0.0.1\n  port: 9\n")
    cfg = load(folder)
    directory.add_user(conn, "ann", email="ann@example.org")
    directory.add_user(conn, "bob", email="bob@example.org")
    removed = send_user_notification(conn, None, "ann", "to a user who is gone")
    cleared = send_user_notification(conn, None, "bob", "to an address that is gone")
    directory.remove_user(conn, "ann")
    directory.add_user(conn, "bob")
    woken = []
    duty = MailDuty(cfg, MAIL_BOT, wake=lambda: woken.append(True))
    assert duty.run(conn) is None  # nothing pending
    assert [state_of(conn, n)["email_state"] for n in (removed, cleared)] == ["none", "none"]
    assert not duty.courier.busy and not woken  # nothing was sent


@pytest.fixture
def silent_smtp():
    servers = []

    def start():
        servers.append(SilentServer(free_port()))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


# Test fleets heartbeat every 500 ms and are hung after 1.5 s: a bot whose loop never waits on the network
# stays within this on a busy machine. The old bot waited on the server for 10 s, in a transaction.
FRESH_HEARTBEAT_S = 1.2
SHORT_TRANSACTION_S = 0.5
SILENCE_S = 60


def watchdog_actions(conn, since) -> list:
    """What the watchdog did to the mail bot, or thought of it, after event `since`: all but finding it healthy."""
    return conn.execute("""SELECT action, reason FROM watchdog_events WHERE bot = %s AND id > %s
                           AND NOT (action = 'health' AND reason LIKE '%%-> healthy%%')""", (MAIL_BOT, since)).fetchall()


@pytest.mark.processes
@pytest.mark.process_faults  # about the bot's liveness, not SQL: the first CI run is enough
def test_a_silent_smtp_server_neither_stales_the_heartbeat_nor_holds_a_transaction_and_the_mail_goes_out_later(
        supervised, conn, smtp, silent_smtp):
    silent = silent_smtp()
    # Tries at about 0, 2, 5, 10, 19 and 36 s, each failing after the timeout (half the hung threshold,
    # 0.75 s); the next at about 68 s, once the server answers.
    fleet = supervised(fleet_extra=f"mail:\n  host: 127.0.0.1\n  port: {silent.port}\n  max_tries: 100\n"
                                   f"  retry_backoff: 1s\n  operators_group: ops\n")
    fleet.start()
    directory.add_user(conn, "ann", email="ann@example.org")
    wait_until(lambda: (heartbeat_age_s(conn, MAIL_BOT) or 99) < FRESH_HEARTBEAT_S, 30, "the mail bot to heartbeat")
    pid = fleet.processes()[MAIL_BOT]["pid"]
    since = last_event_id(conn)
    waiting = send_user_notification(conn, None, "ann", "through the silence")

    worst = {"heartbeat_age_s": 0.0, "idle_in_transaction_s": 0.0}

    def healthy():
        info = fleet.processes()[MAIL_BOT]
        worst["heartbeat_age_s"] = max(worst["heartbeat_age_s"], heartbeat_age_s(conn, MAIL_BOT) or 99)
        worst["idle_in_transaction_s"] = max(worst["idle_in_transaction_s"], idle_in_transaction_s(conn, MAIL_BOT))
        return (info["pid"] == pid and info["statename"] == "RUNNING" and worst["heartbeat_age_s"] < FRESH_HEARTBEAT_S
                and worst["idle_in_transaction_s"] < SHORT_TRANSACTION_S)

    def what():
        return f"the mail bot's health (worst so far {worst}; watchdog: {watchdog_actions(conn, since)})"
    stays_true(healthy, SILENCE_S, what)
    row = state_of(conn, waiting)
    assert silent.accepted >= 3 and row["email_attempts"] >= 3, (silent.accepted, row)  # tried, and tried again
    assert row["email_state"] == "pending" and "timed out" in row["email_error"], row

    silent.stop()
    mailbox, _ = smtp(port=silent.port)

    def sent():
        assert healthy(), what()
        return state_of(conn, waiting)["email_state"] == "sent"
    wait_until(sent, 90, lambda: f"the mail to go out once the server answers: {state_of(conn, waiting)}")
    assert [content.count("through the silence") for _, content in mailbox.received] == [1]
    assert not watchdog_actions(conn, since), what()


def lease_left_s(conn, notification_id) -> float:
    return conn.execute("SELECT extract(epoch FROM email_lease_until - clock_timestamp())::float8 AS s "
                        "FROM notifications WHERE id = %s", (notification_id,)).fetchone()["s"]


@pytest.mark.processes
@pytest.mark.process_faults
def test_a_mail_sent_whose_mark_was_lost_is_not_sent_again_within_its_lease_and_is_after_it(
        tmp_path, db_url, conn, processes, smtp):
    # The server has the message, and the bot dies before it hears so: it never marks the mail sent.
    def kill_the_bot():
        first_bot.send_signal(signal.SIGKILL)
        first_bot.wait()
    mailbox, port = smtp(on_first_message=kill_the_bot)
    cfg = mail_fleet(tmp_path, db_url, conn, processes, port)
    first_bot = processes.procs[-1]
    lost = send_user_notification(conn, None, "ann", "the first mail")
    wait_until(lambda: first_bot.poll() is not None, 30, "the server to receive the mail, and the bot to be killed")
    assert first_bot.returncode == -signal.SIGKILL and len(mailbox.received) == 1

    processes.start(MAIL_BOT, cfg.root, db_url)
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM bot_processes WHERE bot_name = %s",
                                    (MAIL_BOT,)).fetchone()["n"] == 2, 30, "the mail bot to start again")
    later = send_user_notification(conn, None, "ann", "the second mail")
    wait_until(lambda: state_of(conn, later)["email_state"] == "sent", 30, "the restarted bot to mail the next one")
    texts = lambda: [content for _, content in mailbox.received]  # noqa: E731
    assert ["the first mail" in text for text in texts()] == [True, False], "the first mail was sent twice"
    # The lease is real time: the business clock a day on makes the first mail due, not free.
    clock.shift(conn, 86400)
    assert lease_left_s(conn, lost) > 1, "the restart took about the whole lease: nothing left to watch"
    stays_true(lambda: len(mailbox.received) == 2, min(3.0, lease_left_s(conn, lost) - 0.5),
               lambda: f"the first mail unsent within its lease ({len(mailbox.received)} received)")
    # Never lost: once its lease has run out, it goes out again.
    wait_until(lambda: state_of(conn, lost)["email_state"] == "sent", lease_left_s(conn, lost) + 30,
               lambda: f"the first mail to go out again after its lease: {state_of(conn, lost)}")
    assert ["the first mail" in text for text in texts()] == [True, False, True]


def test_an_earlier_round_is_merged_into_a_later_one_already_sent_first(tmp_path, conn):
    """The later round of a ticket may go first: written just before the window opened, never held, it is due
    before the rounds the window held. Those are stale once it is sent, not mailed again after it."""
    from common.store import sql

    folder = write_config(tmp_path / "config", fleet_extra="mail:\n  host: 127.0.0.1\n  port: 9\n")
    cfg = load(folder)
    sync_config(conn, cfg)
    directory.add_user(conn, "ann", email="ann@example.org")
    ticket_id = create_ticket(conn, cfg, "testms", "pipe", {})
    held, later = (send_user_notification(conn, ticket_id, "ann", text, kind="acceptance") for text in ("1st", "2nd"))
    # The first round was held for a window that opens in a minute; the later one is due now.
    conn.execute("UPDATE notifications SET email_due_at = botfleet_now() + interval '1 minute' WHERE id = %s", (held,))
    taken = conn.execute(sql.TAKE_MAIL, {"limit": 10, "lease_s": 30}).fetchall()
    assert [(row["id"], row["to_send"]) for row in taken] == [(later, True)]
    conn.execute(sql.MAIL_SENT, {"id": later})
    clock.shift(conn, 120)
    taken = conn.execute(sql.TAKE_MAIL, {"limit": 10, "lease_s": 30}).fetchall()
    assert [(row["id"], row["to_send"]) for row in taken] == [(held, False)]
    assert state_of(conn, held)["email_state"] == "merged"
