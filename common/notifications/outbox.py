"""send_user_notification and the inbox: notifications are rows, written with what causes them."""

from common.errors import BotfleetError
from common.store import sql


def send_user_notification(conn, ticket_id, user, text, *, kind="message", mail=True) -> int:
    """Notify a user about a ticket (in their inbox, and by email if they have an address and `mail`, the fleet
    mails at all); the row commits with the caller's transaction. Returns its id."""
    if not isinstance(text, str) or not text.strip():
        raise BotfleetError("a notification needs a text")
    row = conn.execute(sql.NOTIFY_USER, {"ticket_id": ticket_id, "user": user, "kind": kind, "text": text,
                                         "mail": mail}).fetchone()
    if row is None:
        raise BotfleetError(f"no user named {user!r} to notify")
    return row["id"]


def inbox(conn, user, *, include_read=False, limit=100) -> list[dict]:
    return conn.execute(sql.INBOX, {"user": user, "all": include_read, "limit": limit}).fetchall()


def mark_read(conn, user, ids=None) -> list[int]:
    return [r["id"] for r in conn.execute(sql.MARK_READ, {"user": user, "ids": ids}).fetchall()]
