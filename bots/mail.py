"""The duty of the built-in bot botfleet-mail-1-deliver: mail the notifications of users with an address.

Each run takes the pending mail that is due (SKIP LOCKED, so replicas share it): mail outside the user's
delivery window waits for it to open; the rest goes out over SMTP (smtplib). A failed try is tried
again with a doubling backoff; after `max_tries` the notification is undeliverable (never dropped: the
inbox keeps it) and the operators' group hears of it through one error ticket, which counts every
further problem until an operator resolves it. Then the sweeper removes
notifications done with mail and older than `keep_delivered`.
"""

import logging
import os
import smtplib
from email.message import EmailMessage

from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE
from common.store import sql
from common.tickets.create import create_ticket

log = logging.getLogger(__name__)

MAIL_PER_TRANSACTION = 20
SMTP_TIMEOUT_S = 10


class MailDuty:
    def __init__(self, config, actor, wake=None):
        self.config = config
        self.settings = config.mail
        self.actor = actor

    def run(self, conn) -> float | None:
        """Deliver what is due, sweep; seconds until the next mail is due (None: nothing pending)."""
        while True:
            with conn.transaction():
                rows = conn.execute(sql.TAKE_MAIL, {"limit": MAIL_PER_TRANSACTION}).fetchall()
                for row in rows:
                    self._deliver(conn, row)
            if len(rows) < MAIL_PER_TRANSACTION:
                break
        conn.execute(sql.PRUNE_NOTIFICATIONS, {"keep_s": self.settings.keep_delivered_s})
        self._report_stuck(conn)
        return conn.execute(sql.NEXT_MAIL_DUE).fetchone()["due_in_s"]

    def _report_stuck(self, conn):
        """One error ticket to the operators for each mail pending longer than mail.stuck_after."""
        with conn.transaction():
            for row in conn.execute(sql.MARK_STUCK_MAIL, {"stuck_after_s": self.settings.stuck_after_s}).fetchall():
                self._error_ticket(conn, row, f"notification {row['id']} to {row['user_name']} has waited "
                                              f"{row['age_s']:.0f}s to be mailed ({row['email_attempts']} tries; "
                                              f"last error: {row['email_error'] or 'none'})")

    def _deliver(self, conn, row):
        if not row["in_window"]:
            conn.execute(sql.MAIL_LATER, {"id": row["id"], "due_at": row["window_opens_at"]})
            return
        error = self._send(row)
        if error is None:
            conn.execute(sql.MAIL_SENT, {"id": row["id"]})
            return
        result = conn.execute(sql.MAIL_FAILED, {"id": row["id"], "error": error, "max_tries": self.settings.max_tries,
                                                "backoff_s": self.settings.retry_backoff_s}).fetchone()
        log.warning("mail %s to %s failed (try %d of %d): %s", row["id"], row["email"], result["email_attempts"],
                    self.settings.max_tries, error)
        if result["email_state"] == "undeliverable":
            self._error_ticket(conn, row, f"notification {row['id']} to {row['user_name']} <{row['email']}> is "
                                          f"undeliverable after {result['email_attempts']} tries: {error}")

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

    def _send(self, row) -> str | None:
        """Mail one notification; None, or why it failed."""
        settings = self.settings
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = row["email"]
        message["Subject"] = f"[botfleet] {row['kind']}" + (f": ticket {row['ticket_id']}" if row["ticket_id"] else "")
        message.set_content(row["text"])
        smtp_class = smtplib.SMTP_SSL if settings.security == "tls" else smtplib.SMTP
        try:
            with smtp_class(settings.host, settings.port, timeout=SMTP_TIMEOUT_S) as smtp:
                if settings.security == "starttls":
                    smtp.starttls()
                if settings.username:
                    smtp.login(settings.username, os.environ.get(settings.password_env or "", ""))
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return f"{type(exc).__name__}: {exc}"[:2000]
        return None
