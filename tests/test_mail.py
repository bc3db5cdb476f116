"""Notifications mailed by the built-in bot botfleet-mail-1-deliver, against a real SMTP server (aiosmtpd):
delivered; held until the user's delivery window opens; refused, tried again, then undeliverable with
one error ticket for the operators, and never dropped."""

from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from common.config.builtin import MAIL_BOT
from common.config.load import load
from common.fleet import status
from common.notifications.outbox import inbox, send_user_notification
from common.people import directory
from common.store import clock
from common.store.sync import sync_config
from common.tickets.manual import close_ticket
from tests.conftest import free_port, registered, stays_true, wait_until, write_config
from watchdog.collector import scrape_text

pytestmark = pytest.mark.processes


class Mailbox:
    """An aiosmtpd handler that keeps what it receives, or refuses every recipient."""

    def __init__(self, refuse=False):
        self.refuse = refuse
        self.received = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.rcpt_tos, envelope.content.decode(errors="replace")))
        return "250 Message accepted"


@pytest.fixture
def smtp():
    servers = []

    def start(refuse=False):
        mailbox = Mailbox(refuse)
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
        controller.start()
        servers.append(controller)
        return mailbox, controller.port
    yield start
    for controller in servers:
        controller.stop()


def mail_fleet(tmp_path, db_url, conn, processes, port, max_tries=3, retry_backoff="200ms"):
    folder = write_config(tmp_path / "config", fleet_extra=(
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
    assert state_of(conn, held)["email_state"] == "sent"


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
