"""parse_notification: hand a message from another bot to the handler module's function for its kind.

A message of kind "escalate" goes to `on_escalate(message)` in the module of the receiving bot's
handler. What cannot be handled (no such function, a body that is not an object, a function that
raises) is rejected: recorded with the error, logged with its sender, counted; the bot carries on.
"""

from dataclasses import dataclass


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
