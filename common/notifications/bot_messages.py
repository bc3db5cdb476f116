"""send_bot_notification: a message from one bot (or a person, or the API) to another, persisted and then
announced with a NOTIFY on the receiving bot's channel, in the caller's transaction."""

import re

from psycopg.types.json import Jsonb

from common.errors import BotfleetError
from common.store import sql

KIND = re.compile(r"^[a-z][a-z0-9_]*$")


def check_message(config, bot, kind):
    """What a message must be to be sent: to a bot of this config, of a kind that names a function."""
    if bot not in config.bots:
        raise BotfleetError(f"no bot named {bot!r} to send a message to")
    if not isinstance(kind, str) or not KIND.match(kind):
        raise BotfleetError(f"message kind {kind!r} must be a-z, 0-9 and _ (the receiving module's on_<kind>)")


def send_bot_notification(conn, config, ticket_id, bot, text, *, kind="message", sender=None) -> int:
    check_message(config, bot, kind)
    spec = config.bots[bot]
    row = conn.execute(sql.SEND_BOT_MESSAGE, {
        "to_bot": bot, "ticket_id": ticket_id, "kind": kind, "body": Jsonb({"text": text}), "sender": sender,
        "channel": sql.channel(spec.metaservice, spec.ticket_type, spec.state)}).fetchone()
    return row["id"]
