"""What a ticket's payload may hold: a JSON object that PostgreSQL's jsonb accepts, within the size limit.

Checked before anything is written, where tickets are created and where a handler's outcome is
planned, so that a payload the database would refuse becomes that step's failure instead of a
batch that cannot be written.
"""

import json

from common.errors import BotfleetError


class PayloadError(BotfleetError):
    """A payload that cannot be stored; the message says why and what."""


def _strings(value):
    """Every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def encode_payload(payload, max_bytes: int, what: str = "payload") -> str:
    """The payload as the JSON text jsonb stores; PayloadError naming `what` when it cannot be stored."""
    if not isinstance(payload, dict):
        raise PayloadError(f"{what} must be a JSON object, got {type(payload).__name__}")
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"{what} cannot be stored as JSON: {exc}") from None
    if any("\x00" in string for string in _strings(payload)):
        raise PayloadError(f"{what} cannot be stored: a string holds a NUL character (\\u0000), which jsonb refuses")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(f"{what} cannot be stored: a string is not valid Unicode ({exc.reason})") from None
    if len(encoded) > max_bytes:
        raise PayloadError(f"{what} is {len(encoded)} bytes, more than max_payload_bytes ({max_bytes}) in fleet.yaml")
    return text


MAX_REASON_CHARS = 2000  # an error event names its cause; it does not store a handler's whole output


def storable_text(text: str) -> str:
    """`text` (an exception's message, say) as jsonb accepts it: no NUL, valid Unicode, bounded length."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."
