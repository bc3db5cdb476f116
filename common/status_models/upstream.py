"""The replies of the upstream statusek service, for its clients (the API's /statusek/ mode): every reply is
{"status": bool, "message": str, "data": {...}}, "message" empty on success, and upstream's own texts on
failure (misspellings included: clients match them). Pure: the params a request carries, and the words for
what the status model decided (rules.py, instances.py)."""

import json
from urllib.parse import parse_qsl

from common.config.status_models import STOP
from common.status_models.instances import UNKNOWN_OBJECT, UNKNOWN_TOKEN
from common.status_models.rules import (
    ALREADY_SET,
    COMPLETED,
    FINISHED,
    NEEDS_MANDATORY,
    NEEDS_ONE_OF,
    STOPPED,
    TIMED_OUT,
    TOO_LATE,
    UNKNOWN_STATUS,
)

MAX_TIMEOUT_S = 2**31 - 1
PARSING_FAILED = "Error while parameters parsing"
# Upstream's words for how an instance finished (checkIsFinished's description).
FINISH_DESCRIPTIONS = {COMPLETED: "ALL_MANDATORY_STATUSES_ARE_SET", STOPPED: "STOP_STATUS_IS_SET",
                       TIMED_OUT: "TIMEOUT"}
# Upstream calls a STOP status STOP-STATUS.
STATUS_TYPES = {STOP: "STOP-STATUS"}
_TEXTS = {
    UNKNOWN_TOKEN: "ERROR: Instance token '{token}' is not found",
    UNKNOWN_OBJECT: "ERROR: Object name '{object}' is not found",
    UNKNOWN_STATUS: "ERROR: Status name '{status}' is not found for instance '{token}'",
    FINISHED: "Instance '{token}' is finished by '{finished_by}'",
    ALREADY_SET: "Status '{status}' is already set for instance '{token}'",
    NEEDS_MANDATORY: "Not all previos mandatory statuses are set for status '{status}'",
    NEEDS_ONE_OF: "No one previos optional statuses are sets for status '{status}'",
    TOO_LATE: "At least one next status is set for optional status '{status}'",
}
# The refusals checkStatusIsReadyToSet answers as a successful "not ready" rather than as a failure: the
# rules of the model, not an unknown token, object or status, nor a finished instance.
NOT_READY = frozenset({ALREADY_SET, NEEDS_MANDATORY, NEEDS_ONE_OF, TOO_LATE})
FORM = "application/x-www-form-urlencoded"


class ParamsError(ValueError):
    """Parameters that cannot be read, or a value of the wrong kind: PARSING_FAILED and why."""

    def __str__(self):
        return f"{PARSING_FAILED}: {self.args[0]}"


def reply(ok: bool, message: str = "", data: dict | None = None) -> dict:
    return {"status": ok, "message": message, "data": data or {}}


def refused_text(kind: str | None, token: str = "", status: str = "", object_name: str = "",
                 finished_by: str | None = None) -> str | None:
    """Upstream's message for a refusal of `kind`, with its names filled in; None for a kind it has none for."""
    text = _TEXTS.get(kind)
    if text is None:
        return None
    return text.format(token=token, status=status, object=object_name,
                       finished_by=FINISH_DESCRIPTIONS.get(finished_by, finished_by or ""))


def read_params(query: dict, body: bytes, content_type: str) -> dict:
    """The request's parameters: the query string's, then the body's over them. The body is JSON whatever
    its Content-Type says (upstream's clients send "raw json", often with curl -d's form type), or a form
    when it is sent as one and is not JSON. No parameters at all is an error, as an empty body is upstream."""
    params = dict(query)
    text = body.decode("utf-8", errors="replace").strip()
    media = content_type.split(";")[0].strip().lower()
    if text and media == FORM and not text.startswith("{"):
        try:
            params.update(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
        except ValueError as exc:
            raise ParamsError(f"the body is not a form: {exc}") from None
    elif text:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParamsError(f"the body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ParamsError(f"the body must be a JSON object like {{\"instance_token\": \"...\"}}, got "
                              f"{type(parsed).__name__}")
        params.update(parsed)
    if not params:
        raise ParamsError("no parameters: send them as JSON in the body, as a form, or in the query string")
    return params


def text_param(params: dict, name: str, default: str = "") -> str:
    value = params.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ParamsError(f"{name} must be a text, got {json.dumps(value)}")
    return value


def timeout_param(params: dict) -> int:
    """instance_timeout in seconds: a whole number from 1 on (upstream takes a missing or zero one and makes
    an instance that is finished as it is born)."""
    value = params.get("instance_timeout")
    if isinstance(value, str) and value.strip().isdigit():  # from a query string or a form
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMEOUT_S:
        raise ParamsError(f"instance_timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT_S}, got "
                          f"{json.dumps(value)}")
    return value


def event(row) -> dict:
    """A STATUS_EVENTS row as upstream shows an event: its status as upstream's record of it (the times of that
    record, which botfleet does not keep, null) and when it was set."""
    return {"Status": {"ID": row["status_id"], "CreatedAt": None, "UpdatedAt": None, "DeletedAt": None,
                       "ObjectID": row["object_id"], "StatusName": row["status_name"],
                       "StatusDesc": row["description"] or "",
                       "StatusType": STATUS_TYPES.get(row["type"], row["type"])},
            "EventMessage": row["message"] or "", "EventCreationDt": row["at"].isoformat()}
