"""Instances of status models: created with a timeout, known by their token, statuses set on them under
the model's rules (rules.py), finished by a STOP status, by every MANDATORY one, or by their timeout."""

import uuid
from dataclasses import dataclass

from common.errors import BotfleetError
from common.status_models.rules import STOPPED, Refusal, finish_reason, refusal
from common.store import sql

# What a refusal is about besides the rules' kinds (rules.py), for callers that word it their own way.
UNKNOWN_TOKEN, UNKNOWN_OBJECT = "unknown_token", "unknown_object"

EXPIRE_BATCH = 1000


class StatusRefused(BotfleetError):
    """A call the status model refuses, with its HTTP status (400 bad request, 404 unknown, 409 refused) and
    its kind (UNKNOWN_TOKEN, UNKNOWN_OBJECT or a rule's, rules.py)."""

    def __init__(self, http_status: int, message: str, field: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.http_status, self.field, self.kind = http_status, field, kind


@dataclass(frozen=True)
class Instance:
    id: int
    token: str
    object_name: str
    version: int
    finish_reason: str | None
    stop_status: str | None
    set_statuses: tuple

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def parse_token(token) -> str:
    """An instance token as the database holds it, or 400 naming it."""
    try:
        return str(uuid.UUID(str(token)))
    except ValueError:
        raise StatusRefused(400, f"instance_token {token!r} is not a token (a UUID like "
                                 "1d36bcdf-d776-4e7a-97a6-4431079d2b2e)", "instance_token",
                             UNKNOWN_TOKEN) from None


def instance_of(row, token: str) -> Instance:
    """The instance of a READ_STATUS_INSTANCE row, or 404 when there was none."""
    if row is None:
        raise StatusRefused(404, f"there is no instance with the token {token}", "instance_token",
                             UNKNOWN_TOKEN)
    return Instance(row["id"], row["token"], row["object_name"], row["version"], row["finish_reason"],
                    row["stop_status"], tuple(row["set_statuses"]))


def model_of(config, instance: Instance):
    model = config.status_models.get(instance.object_name)
    if model is None:
        raise StatusRefused(404, f"object {instance.object_name!r} of instance {instance.token} no longer has a "
                                 "status model in config/status_models", kind=UNKNOWN_OBJECT)
    return model


def set_status_params(config, instance: Instance, status: str, message: str | None) -> dict:
    """The parameters of sql.SET_STATUS for setting `status` on `instance`, or StatusRefused naming why not."""
    model = model_of(config, instance)
    refused: Refusal | None = refusal(model, instance.token, instance.set_statuses, status, instance.finish_reason)
    if refused is not None:
        raise StatusRefused(refused.http_status, refused.message, "status_name", refused.kind)
    reason = finish_reason(model, (*instance.set_statuses, status))
    return {"id": instance.id, "version": instance.version, "status": status, "message": message,
            "finish_reason": reason, "stop_status": status if reason == STOPPED else None}


def create_params(config, object_name: str, timeout_s: int) -> dict:
    if object_name not in config.status_models:
        raise StatusRefused(404, f"there is no status model for object {object_name!r} (known: "
                                 f"{', '.join(sorted(config.status_models)) or 'none'})", "object_name",
                            UNKNOWN_OBJECT)
    return {"object_name": object_name, "timeout_s": timeout_s}


def expire_overdue(conn) -> tuple[int, float | None]:
    """Finish every instance whose timeout has passed, a batch at a time: (how many, seconds until the next
    deadline by the one clock, or None when no instance is running)."""
    total = 0
    while True:
        row = conn.execute(sql.EXPIRE_STATUS_INSTANCES, {"limit": EXPIRE_BATCH}).fetchone()
        total += row["expired"]
        if row["expired"] < EXPIRE_BATCH:
            return total, row["next_in_s"]


def instance_counts(conn) -> list[dict]:
    """[{object_name, finish_reason ('open' while running), instances}]."""
    return conn.execute(sql.STATUS_INSTANCE_COUNTS).fetchall()
