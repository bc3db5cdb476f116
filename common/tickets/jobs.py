"""Jobs (seed 000's operations, seed 004's /job): tickets of the types marked `job: true`. Their status is
derived, never stored, from where the ticket stands, so it cannot disagree with the ticket."""

from dataclasses import dataclass
from datetime import datetime

from common.config.models import FAILED
from common.store import sql

SLEEPING, NOT_STARTED, RUNNING = "sleeping", "notstarted", "running"
SORTS = ("last_action", "created")


@dataclass(frozen=True)
class Operation:
    id: int
    metaservice: str
    ticket_type: str
    state: int
    payload: dict
    created_at: datetime
    last_action: datetime
    status: str
    exclusive: bool

    @property
    def name(self) -> str:
        return str(self.payload.get("name") or f"{self.metaservice}/{self.ticket_type}")


def operation_status(*, closed: bool, outcome: str | None, sleeping: bool, started: bool) -> str:
    """sleeping before its start_after, notstarted until a bot first takes it, running until it closes, then
    its final state's outcome; a job closed by hand where it stood did not succeed."""
    if closed:
        return outcome if outcome is not None else FAILED
    if sleeping:
        return SLEEPING
    return RUNNING if started else NOT_STARTED


def _job_types(config) -> dict:
    kinds = config.job_types()
    return {"metaservices": [k.metaservice for k in kinds], "ticket_types": [k.name for k in kinds]}


def _operation(config, row) -> Operation:
    kind = config.ticket_type(row["metaservice"], row["ticket_type"])
    status = operation_status(closed=row["closed_at"] is not None, outcome=kind.outcome_of(row["state"]),
                              sleeping=row["sleeping"], started=row["step"] > 0 or row["leased"])
    return Operation(id=row["id"], metaservice=row["metaservice"], ticket_type=row["ticket_type"], state=row["state"],
                     payload=row["payload"], created_at=row["created_at"], last_action=row["last_action"], status=status,
                     exclusive=kind.exclusive)


def list_operations(conn, config, *, sort="last_action", limit=100) -> list[Operation]:
    rows = conn.execute(sql.LIST_OPERATIONS, {**_job_types(config), "sort": sort, "limit": limit}).fetchall()
    return [_operation(config, row) for row in rows]


def is_job(config, ticket) -> bool:
    return (ticket.metaservice, ticket.ticket_type) in {kind.key for kind in config.job_types()}


def delete_object_jobs(conn, config, object_type: str, object_id: str) -> tuple[list[int], list[int]]:
    """Remove the jobs submitted for an object that no longer exists (payload object_type and object_id),
    with their history, except those running; (the ids removed, the ids left running)."""
    params = {**_job_types(config), "object_type": object_type, "object_id": object_id}
    with conn.transaction():
        deleted = conn.execute(sql.DELETE_OBJECT_JOBS, params).fetchone()["deleted"]
        running = [row["id"] for row in conn.execute(sql.RUNNING_OBJECT_JOBS, params).fetchall()]
    return deleted, running


def log_entry(config, ticket, event) -> str:
    """One line of a job's log, from one of its events."""
    def named(code):
        name = config.state_name(ticket.metaservice, ticket.ticket_type, code)
        return f"{code} ({name})" if name else str(code)

    text, before, after = event["kind"], event["from_state"], event["to_state"]
    if before is not None and after is not None and before != after:
        text += f" from {named(before)} to {named(after)}"
    elif after is not None:
        text += f" in {named(after)}"
    detail = event["detail"] or {}
    said = next((detail[key] for key in ("reason", "error", "message", "text") if detail.get(key)), None)
    if said:
        text += f": {said}"
    if event["actor"]:
        text += f" (by {event['actor']})"
    return text
