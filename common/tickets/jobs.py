"""Jobs (seed 000's operations, seed 004's /job): tickets of the types marked `job: true`. Their status is
derived, never stored, from where the ticket stands, so it cannot disagree with the ticket."""

from dataclasses import dataclass
from datetime import datetime

from common.config.models import FAILED, SUCCEEDED
from common.store import sql
from common.tickets.workers import lease_owner as lease_owner_of

SLEEPING, NOT_STARTED, RUNNING = "sleeping", "notstarted", "running"
SORTS = ("last_action", "created")
# One status, two vocabularies: seed 000's (/operations) and seed 004's (/job), word for word.
JOB_WORDS = {SLEEPING: "pending", NOT_STARTED: "pending", RUNNING: "in_progress", SUCCEEDED: "completed",
             FAILED: "failed"}


@dataclass(frozen=True)
class Operation:
    id: int
    metaservice: str
    ticket_type: str
    state: int
    payload: dict
    created_at: datetime
    last_action: datetime
    status: str  # seed 000's word
    exclusive: bool
    lease_owner: str | None = None
    lease_dead: bool = False
    job_name: str | None = None
    object_type: str | None = None
    object_id: str | None = None

    @property
    def job_status(self) -> str:
        """The status in seed 004's words (/job)."""
        return JOB_WORDS[self.status]

    @property
    def name(self) -> str:
        return self.job_name or f"{self.metaservice}/{self.ticket_type}"


def operation_status(*, closed: bool, outcome: str | None, sleeping: bool, moved_on: bool, held: bool) -> str:
    """A job's one status: its final state's outcome once closed (closed by hand where it stood: failed);
    running while held (by a bot, a worker, or a wait for another ticket) or once past its initial state;
    before that sleeping until its start_after, then notstarted. A payload change starts nothing."""
    if closed:
        return outcome if outcome is not None else FAILED
    if held or moved_on:
        return RUNNING
    return SLEEPING if sleeping else NOT_STARTED


def _job_types(config) -> dict:
    kinds = config.job_types()
    return {"metaservices": [k.metaservice for k in kinds], "ticket_types": [k.name for k in kinds]}


def _operation(config, row) -> Operation:
    kind = config.ticket_type(row["metaservice"], row["ticket_type"])
    status = operation_status(closed=row["closed_at"] is not None, outcome=kind.outcome_of(row["state"]),
                              sleeping=row["sleeping"], moved_on=row["state"] != kind.initial, held=row["held"])
    return Operation(id=row["id"], metaservice=row["metaservice"], ticket_type=row["ticket_type"], state=row["state"],
                     payload=row["payload"], created_at=row["created_at"], last_action=row["last_action"], status=status,
                     exclusive=kind.exclusive, lease_owner=row["lease_owner"], lease_dead=bool(row["lease_dead"]),
                     job_name=row["job_name"], object_type=row["object_type"], object_id=row["object_id"])


def list_operations(conn, config, *, sort="last_action", limit=100) -> list[Operation]:
    rows = conn.execute(sql.LIST_OPERATIONS, {**_job_types(config), "sort": sort, "limit": limit}).fetchall()
    return [_operation(config, row) for row in rows]


def get_operation(conn, config, job_id) -> Operation:
    """One job as /operations shows it (its ticket must exist and be a job)."""
    [job] = operations_by_id(conn, config, [job_id])
    return job


def operations_by_id(conn, config, ids) -> list[Operation]:
    """The jobs of `ids` as /operations shows them, in no particular order (an id that is gone is left out)."""
    if not ids:
        return []
    return [_operation(config, row) for row in conn.execute(sql.OPERATIONS_BY_ID, {"ids": list(ids)}).fetchall()]


def unsettled_jobs(conn, config, metaservice, ticket_type, *, worker=None, only=True, limit=100) -> list[Operation]:
    """The open jobs of a type, oldest first; with `only`, those left to settle by a restarted worker: pending
    (sleeping or notstarted), held by the worker named, or held by an owner whose hold lapsed."""
    rows = conn.execute(sql.OPEN_JOBS, {"metaservice": metaservice, "ticket_type": ticket_type,
                                        "limit": limit if not only else None}).fetchall()
    found = [_operation(config, row) for row in rows]
    if only:
        mine = lease_owner_of(worker) if worker else None
        found = [job for job in found if job.status in (SLEEPING, NOT_STARTED)
                 or (job.lease_owner is not None and (job.lease_owner == mine or job.lease_dead))]
    return found[:limit]


def record_starts(conn, config, tickets, actor):
    """The log entry of each job among `tickets` taken (or moved on) for the first time: once per job."""
    ids = [t.id for t in tickets if is_job(config, t)]
    if ids:
        conn.execute(sql.JOB_STARTED, {"ids": ids, "actor": actor})


def is_job(config, ticket) -> bool:
    return (ticket.metaservice, ticket.ticket_type) in {kind.key for kind in config.job_types()}


def delete_object_jobs(conn, config, object_type: str, object_id: str) -> tuple[list[int], list[int]]:
    """Remove the jobs submitted for an object that no longer exists, with their history, except those
    running (by operation_status): (the ids removed, the ids left running)."""
    params = {**_job_types(config), "object_type": object_type, "object_id": object_id}
    with conn.transaction():
        jobs = [_operation(config, row) for row in conn.execute(sql.OBJECT_JOBS, params).fetchall()]
        running = [job.id for job in jobs if job.status == RUNNING]
        doomed = [job.id for job in jobs if job.status != RUNNING]
        deleted = conn.execute(sql.DELETE_JOBS, {"ids": doomed}).fetchone()["deleted"] if doomed else []
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
