"""parse_notification: hand a message from another bot to the handler module's function for its kind.

A message of kind "escalate" goes to `on_escalate(message)` in the module of the receiving bot's
handler. What cannot be handled (no such function, a body that is not an object, a function that
raises) is rejected: recorded with the error, logged with its sender, counted; the bot carries on.
"""

import logging
from dataclasses import dataclass

from common.store import sql

log = logging.getLogger("botfleet.bot")

MESSAGES_PER_BATCH = 100  # messages from other bots taken at a time


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    body: dict
    sender: str | None
    ticket_id: int | None


def parse_notification(module, row) -> tuple[str, str | None]:
    """("handled", None) or ("rejected", why) for one bot_messages row."""
    if module is None:
        return "rejected", "this bot has no handler module to receive messages"
    if not isinstance(row["body"], dict):
        return "rejected", f"the body is not a JSON object: {row['body']!r}"[:500]
    function = getattr(module, f"on_{row['kind']}", None)
    if not callable(function):
        return "rejected", f"{module.__name__} has no function on_{row['kind']} for messages of kind {row['kind']!r}"
    try:
        function(Message(row["id"], row["kind"], row["body"], row["sender"], row["ticket_id"]))
    except Exception as exc:  # the sender's mistake or the receiver's: either way this bot stays up
        return "rejected", f"on_{row['kind']} raised {type(exc).__name__}: {exc}"[:2000]
    return "handled", None


class Messages:
    """The bot's messages from other bots, taken a batch at a time with a lease and handed to the handler pool:
    on_<kind> is user code, so it runs under handler_timeout and outside any transaction. Each is then
    finished, handled or rejected (an overrun is rejected with that reason), by the process that took it."""

    def __init__(self, spec, owner, module):
        self.spec, self.owner, self.module = spec, owner, module
        # Long enough for a handler that takes all of handler_timeout: the lease is not renewed.
        self.lease_s = spec.handler_timeout_s + spec.lease_s
        self.pending = True  # look at the first turn: messages may have come while the bot was down
        self.taken = 0  # taken and not yet finished

    def wanted(self) -> bool:
        """Whether to look for messages now: one came, and no batch is still out (the next is taken once
        it is finished)."""
        return self.pending and not self.taken

    def take(self, conn) -> list:
        """The next batch, taken; empty while one is still out."""
        if self.taken:
            return []
        self.pending = False
        rows = conn.execute(sql.TAKE_BOT_MESSAGES, {"bot": self.spec.name, "limit": MESSAGES_PER_BATCH,
                                                    "owner": self.owner, "lease_s": self.lease_s}).fetchall()
        self.taken = len(rows)
        return rows

    def handle(self, row):
        """On a handler thread: (outcome, error) of the message's on_<kind>."""
        return parse_notification(self.module, row)

    def finish(self, conn, row, outcome, error, counters):
        self.taken -= 1
        if error:
            counters["notifications_rejected"] += 1
            log.warning("rejected message %s of kind %r from %s: %s", row["id"], row["kind"], row["sender"], error)
        conn.execute(sql.FINISH_BOT_MESSAGE, {"id": row["id"], "outcome": outcome, "error": error, "owner": self.owner})
        if self.taken == 0:
            self.pending = True  # a full batch may have left more behind; an empty look costs one index probe
