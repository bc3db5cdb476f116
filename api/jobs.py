"""/job (seed 004's words) and /operations (seed 000's): jobs are tickets of the types marked `job: true`.
POST /job and PATCH /job/{id} are thin aliases of /tickets for the job type named in fleet.yaml (`jobs:`),
with its status vocabulary; /operations lists every job type's jobs with a status derived from their state."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from api.auth import require
from api.errors import ApiError
from api.models import CREATE_RESPONSES, ERROR_RESPONSES, CallbackUrl, TicketId
from api.tickets import create_once
from common.config.models import JOB_STATUSES
from common.tickets.jobs import (
    SORTS,
    delete_object_jobs,
    get_operation,
    is_job,
    list_operations,
    log_entry,
    record_starts,
    unsettled_jobs,
)
from common.tickets.manual import patch_ticket
from common.tickets.read import get_events, get_ticket
from common.tickets.workers import WORKER_NAME

router = APIRouter(tags=["jobs"])


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "notify users about status change", "object_type": "workorder", "object_id": "WO-1042",
         "payload": {"status": "DONE"}, "callback_url": "https://pm.example.org/hooks/botfleet"}]})

    name: str | None = Field(default=None, min_length=1, max_length=200, description="shown by /operations")
    object_type: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="what submitted it: DELETE /operations removes an object's jobs")
    object_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt | None = Field(
        default=None, description="a string or a number (kept as its text)")
    payload: dict[str, Any] = Field(default_factory=dict, description="the job's instruction, kept as it is sent")
    start_after: AwareDatetime | None = Field(default=None, description="it sleeps until then")
    callback_url: CallbackUrl | None = Field(default=None, description="each state change is POSTed here")
    creator: str | None = Field(default=None, min_length=1, max_length=200)
    group: str | None = Field(default=None, min_length=1, max_length=200)


class JobPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"status": "in_progress", "message": "picked up by worker w1"}, {"status": "completed", "payload": {"result": "ok"}}]})

    status: str | None = Field(default=None, description=f"one of: {', '.join(JOB_STATUSES)}")
    message: str | None = Field(default=None, min_length=1, max_length=2000, description="an entry of the job's log")
    payload: dict[str, Any] | None = Field(default=None, description="a JSON Merge Patch of the payload")


class Job(BaseModel):
    id: int
    status: str = Field(description=f"one of {', '.join(JOB_STATUSES)}: the status /operations shows, in these "
                                    "words (README: Jobs)")
    state: int
    state_name: str | None
    name: str | None
    object_type: str | None
    object_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    start_after: datetime | None
    closed_at: datetime | None
    callback_url: str | None


class Operation(BaseModel):
    id: int
    name: str
    type: str = Field(description="metaservice/type")
    created: datetime
    last_action: datetime = Field(description="the time of its latest event")
    exclusive: bool
    status: str = Field(description="sleeping, notstarted, running, succeeded or failed")
    state: int
    log: str = Field(description="the link to its log")


class LogEntry(BaseModel):
    at: datetime
    entry: str


class Deleted(BaseModel):
    deleted: list[int] = Field(description="the jobs removed, with their logs")
    running: list[int] = Field(description="the object's jobs left alone because they run")


def _settings(request):
    jobs = request.app.state.config.jobs
    if jobs is None:
        raise ApiError(404, "not_found", "this fleet names no job type (jobs: in fleet.yaml)")
    return jobs


def _job_out(conn, config, ticket) -> Job:
    job = get_operation(conn, config, ticket.id)
    return Job(id=ticket.id, status=job.job_status, state=ticket.state,
               state_name=config.state_name(ticket.metaservice, ticket.ticket_type, ticket.state),
               name=job.job_name, object_type=job.object_type, object_id=job.object_id,
               payload=ticket.payload, created_at=ticket.created_at,
               start_after=ticket.start_after, closed_at=ticket.closed_at, callback_url=ticket.callback_url)


def _not_a_job(ticket, what: str) -> ApiError:
    return ApiError(404, "not_a_job", f"ticket {ticket.id} exists but is a {ticket.metaservice}/{ticket.ticket_type} "
                                      f"ticket, not {what}", "job_id")


def _job_ticket(conn, jobs, job_id):
    ticket = get_ticket(conn, job_id)
    if (ticket.metaservice, ticket.ticket_type) != (jobs.metaservice, jobs.ticket_type):
        raise _not_a_job(ticket, f"a job of /job's type {jobs.metaservice}/{jobs.ticket_type}")
    return ticket


@router.post("/job", status_code=201, response_model=Job, responses=CREATE_RESPONSES)
async def create_job(body: JobIn, request: Request, response: Response,
                     token: Annotated[str, Depends(require("submit"))],
                     idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None) -> Job:
    """Create a job of the fleet's job type, pending (sleeping until start_after, if later)."""
    jobs = _settings(request)
    ticket = await create_once(request, response, token, idempotency_key, jobs.metaservice, jobs.ticket_type,
                               body.payload, location="/job", creator=body.creator, group_role=body.group,
                               start_after=body.start_after, callback_url=body.callback_url, job_name=body.name,
                               object_type=body.object_type,
                               object_id=None if body.object_id is None else str(body.object_id))
    with request.app.state.pool.connection() as conn:
        return _job_out(conn, request.app.state.config, ticket)


@router.get("/job", response_model=list[Job], responses=ERROR_RESPONSES)
def list_jobs(request: Request, _: Annotated[str, Depends(require("read"))],
              unsettled: Annotated[bool, Query(description="only the jobs left to settle")] = False,
              worker: Annotated[str | None, Query(pattern=WORKER_NAME, description="the caller's worker name")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Job]:
    """The jobs of /job's type, oldest first. With unsettled=true, what a restarted worker picks up again:
    the pending jobs, and those held by `worker` (its name in /workers/{name}) or by an owner whose hold
    lapsed (it died)."""
    jobs = _settings(request)
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        found = unsettled_jobs(conn, config, jobs.metaservice, jobs.ticket_type, worker=worker, only=unsettled,
                               limit=limit)
        return [_job_out(conn, config, get_ticket(conn, job.id)) for job in found]


@router.get("/job/{job_id}", response_model=Job, responses=ERROR_RESPONSES)
def read_job(job_id: TicketId, request: Request, _: Annotated[str, Depends(require("read"))]) -> Job:
    jobs = _settings(request)
    with request.app.state.pool.connection() as conn:
        return _job_out(conn, request.app.state.config, _job_ticket(conn, jobs, job_id))


@router.patch("/job/{job_id}", response_model=Job, responses=ERROR_RESPONSES)
def update_job(job_id: TicketId, body: JobPatch, request: Request, token: Annotated[str, Depends(require("update"))]) -> Job:
    """Report a job's status, with a message for its log (and merge its payload): the status's state, along
    the type's graph. A status
    outside the vocabulary is 400; one the graph does not allow from where the job stands is 409. Accepted
    while the fleet is locked: work already running can still report."""
    jobs = _settings(request)
    if body.status is None and body.payload is None and body.message is None:
        raise ApiError(422, "invalid", "send status, message, payload, or any of them together", "status")
    if body.status is not None and body.status not in jobs.statuses:
        raise ApiError(400, "unknown_status", f"unknown job status {body.status!r}; "
                                              f"the statuses are: {', '.join(JOB_STATUSES)}", "status")
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        _job_ticket(conn, jobs, job_id)
    # The pool, not a connection of it: a wait for a bot to hand the job back holds none (manual.py).
    ticket = patch_ticket(request.app.state.pool, config, job_id, payload=body.payload, message=body.message,
                          state=jobs.statuses[body.status] if body.status is not None else None, actor=f"api:{token}")
    with request.app.state.pool.connection() as conn:
        if ticket.state != config.ticket_type(ticket.metaservice, ticket.ticket_type).initial:
            record_starts(conn, config, [ticket], f"api:{token}")
        return _job_out(conn, config, ticket)


@router.get("/operations", response_model=list[Operation], responses=ERROR_RESPONSES)
def operations(request: Request, _: Annotated[str, Depends(require("read"))],
               sort: Annotated[str, Query(pattern="^(" + "|".join(SORTS) + ")$")] = "last_action",
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Operation]:
    """The jobs of every job type, latest first by `sort`; answers while the fleet is locked."""
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        found = list_operations(conn, config, sort=sort, limit=limit)
    return [Operation(id=o.id, name=o.name, type=f"{o.metaservice}/{o.ticket_type}", created=o.created_at,
                      last_action=o.last_action, exclusive=o.exclusive, status=o.status, state=o.state,
                      log=f"/operations/{o.id}/log") for o in found]


@router.get("/operations/{job_id}/log", response_model=list[LogEntry], responses=ERROR_RESPONSES)
def operation_log(job_id: TicketId, request: Request, _: Annotated[str, Depends(require("read"))]) -> list[LogEntry]:
    """A job's log, oldest first, from its history."""
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        ticket = get_ticket(conn, job_id)
        if not is_job(config, ticket):
            raise _not_a_job(ticket, "a job (its type has no job: true)")
        return [LogEntry(at=event["at"], entry=log_entry(config, ticket, event)) for event in get_events(conn, job_id)]


@router.delete("/operations", response_model=Deleted, responses=ERROR_RESPONSES)
def delete_operations(request: Request, _: Annotated[str, Depends(require("update"))],
                      object_type: Annotated[str, Query(min_length=1, max_length=200)],
                      object_id: Annotated[str, Query(min_length=1, max_length=200)]) -> Deleted:
    """Remove the jobs of a deleted object (their object_type and object_id) with their logs, but not one
    that runs: it finishes, and goes by retention."""
    with request.app.state.pool.connection() as conn:
        deleted, running = delete_object_jobs(conn, request.app.state.config, object_type, object_id)
    return Deleted(deleted=deleted, running=running)
