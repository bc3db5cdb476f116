"""The duty of the built-in bot botfleet-mail-1-deliver: mail the notifications of users with an address.

Each run takes a batch of the pending mail that is due (SKIP LOCKED, so replicas share it) in one
statement that commits at once: mail outside the user's delivery window waits for it to open; a round
(acceptance, reminder) whose reason is gone (its ticket accepted, closed or timed out) is dropped, and one
with a later round of the same ticket pending for the same user is merged into it, so that the rounds a
window held go as one mail; the rest is leased on real time and goes out over SMTP (smtplib) on the duty's own thread, outside any
transaction and off the control loop (bots/courier.py). The next run marks each mail in a statement of
its own. A mail sent whose mark was lost (the bot died in between) is not sent again before its lease
runs out, and is sent again after it: never lost, at worst twice.

A failed try is tried again with a doubling backoff; after `max_tries` the notification is
undeliverable (never dropped: the inbox keeps it) and the operators' group hears of it through one
error ticket, which counts every further problem until an operator resolves it; so does mail pending
longer than `stuck_after` since it became sendable (time held for a window does not count). Then the sweeper
removes notifications done with mail and older than `keep_delivered`.
"""

import logging
import os
import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from functools import partial

from bots.courier import Courier
from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE
from common.store import sql
from common.tickets.create import create_ticket

log = logging.getLogger(__name__)

MAIL_PER_BATCH = 20
# A batch starts no further mail once it has sent for this many timeouts: its lease must cover it.
BATCH_BUDGET_TIMEOUTS = 10
# The most a session can wait on the server for one mail: connect, greeting, EHLO, STARTTLS and EHLO
# again, AUTH, then MAIL, RCPT, DATA, the message and QUIT.
WAITS_PER_MAIL = 11
UNTRIED = "untried"  # a mail its batch did not get to: due again at once, no try counted
# Errors of one mail (ValueError: a message that cannot be written): the session goes on with the next. Any other error ends the session, and every mail
# of the batch not yet sent fails that try with it (an unreachable or silent server costs one timeout).
MAIL_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError,
               smtplib.SMTPNotSupportedError, ValueError)


def why(exc) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class MailDuty:
    def __init__(self, config, actor, wake=None):
        self.config = config
        self.settings = config.mail
        self.actor = actor
        self.batch_budget_s = BATCH_BUDGET_TIMEOUTS * self.settings.timeout_s
        # Until its batch is back and marked: the budget, the last mail's waits, and a hung threshold for
        # the control loop to write the marks.
        self.lease_s = self.batch_budget_s + WAITS_PER_MAIL * self.settings.timeout_s + config.hung_after_s
        self.courier = Courier("mail-send", wake)
        # Message-IDs in the sender's domain (make_msgid's default, the host's name, may be no domain at all).
        self._domain = parseaddr(self.settings.sender)[1].partition("@")[2] or None

    def run(self, conn) -> float | None:
        """Mark what the last batch sent, send the next; seconds until the next mail is due (None: a batch
        is out, and wake() comes when it is back; or nothing pending)."""
        if self.courier.busy:
            return None
        self.courier.write(partial(self._mark, conn))
        rows = conn.execute(sql.TAKE_MAIL, {"limit": MAIL_PER_BATCH, "lease_s": self.lease_s}).fetchall()
        # The others wait for their window, have no address, or were dropped or merged: not to be sent.
        batch = [row for row in rows if row["to_send"]]
        if batch:
            self.courier.send([partial(self._send_batch, batch)])
        conn.execute(sql.PRUNE_NOTIFICATIONS, {"keep_s": self.settings.keep_delivered_s})
        self._report_stuck(conn)
        if batch:
            return None
        if len(rows) == MAIL_PER_BATCH:
            return 0.0  # a batch of mail not to send now: more may be due
        return conn.execute(sql.NEXT_MAIL_DUE).fetchone()["due_in_s"]

    def _report_stuck(self, conn):
        """One error ticket to the operators for each mail pending longer than mail.stuck_after since it became
        sendable (held for its user's delivery window, a mail is not stuck)."""
        with conn.transaction():
            for row in conn.execute(sql.MARK_STUCK_MAIL, {"stuck_after_s": self.settings.stuck_after_s}).fetchall():
                self._error_ticket(conn, row, f"notification {row['id']} to {row['user_name']} has waited "
                                              f"{row['age_s']:.0f}s to be mailed since it could be ({row['email_attempts']} tries; "
                                              f"last error: {row['email_error'] or 'none'})")

    def _mark(self, conn, result):
        row, error = result
        if error is None:
            conn.execute(sql.MAIL_SENT, {"id": row["id"]})
            return
        if error is UNTRIED:
            conn.execute(sql.MAIL_UNTRIED, {"id": row["id"]})
            return
        with conn.transaction():  # the try and its error ticket, together
            marked = conn.execute(sql.MAIL_FAILED, {"id": row["id"], "error": error, "max_tries": self.settings.max_tries,
                                                    "backoff_s": self.settings.retry_backoff_s}).fetchone()
            if marked is None:
                return  # no longer pending: its lease ran out, and another try was marked first
            log.warning("mail %s to %s failed (try %d of %d): %s", row["id"], row["email"], marked["email_attempts"],
                        self.settings.max_tries, error)
            if marked["email_state"] == "undeliverable":
                self._error_ticket(conn, row, f"notification {row['id']} to {row['user_name']} <{row['email']}> is "
                                              f"undeliverable after {marked['email_attempts']} tries: {error}")

    def _error_ticket(self, conn, row, reason):
        """The operators' error ticket for a mail problem: a new one, or the one still open counts it."""
        conn.execute(sql.LOCK_MAIL_PROBLEMS)
        folded = conn.execute(sql.FOLD_MAIL_PROBLEM, {
            "reason": reason, "notification_id": row["id"], "metaservice": ERROR_METASERVICE,
            "ticket_type": ERROR_TYPE}).fetchone()
        if folded is not None:
            log.info("mail problem counted into the open error ticket %s: %s", folded["id"], reason)
            return
        create_ticket(conn, self.config, ERROR_METASERVICE, ERROR_TYPE, {
            "mail_problem": True, "problems": 1, "notification_id": row["id"], "user": row["user_name"],
            "ticket_id": row["ticket_id"], "reason": reason},
            creator=self.actor, group_role=self.settings.operators_group)

    # -- on the courier's thread: no database here ------------------------------------------------
    def _send_batch(self, rows) -> list:
        """Mail a batch over one SMTP session: (row, None when sent, else why it failed, or UNTRIED)."""
        settings = self.settings
        results = []
        stop_at = time.monotonic() + self.batch_budget_s
        smtp_class = smtplib.SMTP_SSL if settings.security == "tls" else smtplib.SMTP
        try:
            with smtp_class(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
                if settings.security == "starttls":
                    smtp.starttls()
                if settings.username:
                    smtp.login(settings.username, os.environ.get(settings.password_env or "", ""))
                for row in rows:
                    if time.monotonic() >= stop_at:
                        break
                    try:
                        smtp.send_message(self._message(row))
                        results.append((row, None))
                    except MAIL_ERRORS as exc:  # smtplib has reset the session for the next one
                        results.append((row, why(exc)))
        except (OSError, smtplib.SMTPException) as exc:
            error = why(exc)
            # QUIT may fail after the last mail was sent: nothing left to fail then.
            results += [(row, error) for row in rows[len(results):]]
        return results + [(row, UNTRIED) for row in rows[len(results):]]

    def _message(self, row) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = row["email"]
        message["Subject"] = f"[botfleet] {row['kind']}" + (f": ticket {row['ticket_id']}" if row["ticket_id"] else "")
        # RFC 5322 asks for both; without them a receiving server adds its own or counts the mail as spam. The
        # Message-ID names the notification, for whoever traces a mail back to its row.
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(idstring=f"notification-{row['id']}", domain=self._domain)
        message.set_content(row["text"])
        return message
