"""Work and people (screen 5): jobs with their statuses and logs, workers with what each holds and until when,
status model instances by how they finished, people and their inboxes. Read only: each list is bounded and
read on an index, so a page costs the same with a million tickets as with ten."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.console.render import page
from api.console.session import NotFound, Refused, Viewer, viewer
from common.config.models import FAILED, SUCCEEDED
from common.errors import TicketNotFound
from common.notifications.outbox import inbox
from common.people.directory import list_users
from common.store import sql
from common.tickets.jobs import NOT_STARTED, RUNNING, SLEEPING, get_operation, is_job, log_entry, operations_by_id
from common.tickets.read import get_ticket
from common.tickets.workers import external_specs, list_workers

router = APIRouter()

JOB_STATUSES = (SLEEPING, NOT_STARTED, RUNNING, SUCCEEDED, FAILED)
JOBS_SHOWN = 100
# Open jobs read to pick those of one open status: the queue, not the history.
OPEN_JOBS_READ = 1000
LOG_LINES = 500
STATUS_WINDOW = 10_000  # instances counted by how they finished: the newest this many
INSTANCES_SHOWN = 50
INBOX_SHOWN = 100
UNREAD_WINDOW = 200  # a user's newest messages among which the unread are counted
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class JobScan:
    """Where the jobs of a status can be: how many of the newest open ones to read (0: none), and the
    (metaservice, type, state) triples whose closed jobs to read."""
    open_jobs: int
    closed_in: tuple


def job_scan(job_types, status: str | None, shown: int) -> JobScan:
    """A closed job has its final state's outcome (failed when closed by hand where no outcome is), so a
    finished status names the states to read; an open status needs the open jobs, sorted out by
    operation_status after reading."""
    if status in (SUCCEEDED, FAILED):
        return JobScan(0, tuple((k.metaservice, k.name, s.code) for k in job_types for s in k.states.values()
                                if (s.outcome == SUCCEEDED) == (status == SUCCEEDED)))
    if status is not None:
        return JobScan(OPEN_JOBS_READ, ())
    return JobScan(shown, tuple((k.metaservice, k.name, s.code) for k in job_types for s in k.states.values()))


def recent_jobs(conn, config, status: str | None, shown: int = JOBS_SHOWN) -> tuple[list, bool]:
    """The latest jobs (of a status), latest action first: the newest open ones and the latest closed ones;
    and whether the open jobs read were only the newest of them (OPEN_JOBS_READ)."""
    kinds = config.job_types()
    scan = job_scan(kinds, status, shown)
    ids, cut = [], False
    if scan.open_jobs:
        ids += [r["id"] for r in conn.execute(sql.CONSOLE_OPEN_JOB_IDS, {
            "metaservices": [k.metaservice for k in kinds], "ticket_types": [k.name for k in kinds],
            "limit": scan.open_jobs})]
        cut = status is not None and len(ids) == scan.open_jobs
    if scan.closed_in:
        metaservices, ticket_types, states = zip(*scan.closed_in, strict=True)
        ids += [r["id"] for r in conn.execute(sql.CONSOLE_CLOSED_JOB_IDS, {
            "metaservices": list(metaservices), "ticket_types": list(ticket_types), "states": list(states),
            "limit": shown})]
    found = [job for job in operations_by_id(conn, config, ids) if status is None or job.status == status]
    return sorted(found, key=lambda job: (job.last_action, job.id), reverse=True)[:shown], cut


def _job_status(status: str | None) -> str | None:
    if not status:
        return None
    if status not in JOB_STATUSES:
        raise Refused(f"unknown job status {status!r}; the statuses are: {', '.join(JOB_STATUSES)}", 422)
    return status


def _ticket_id(text: str) -> int:
    if not text.isdigit() or int(text) > BIGINT_MAX:
        raise NotFound(f"there is no job {text!r}: a job's id is a number")
    return int(text)


@router.get("/jobs")
def jobs_page(request: Request, who: Annotated[Viewer, Depends(viewer)], status: str | None = None):
    config = request.app.state.config
    status = _job_status(status)
    with request.app.state.pool.connection() as conn:
        jobs, cut = recent_jobs(conn, config, status)
    return page(request, "jobs.html", who, nav="jobs", jobs=jobs, status=status, statuses=JOB_STATUSES,
                shown=JOBS_SHOWN, cut=cut, open_read=OPEN_JOBS_READ, job_types=config.job_types())


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, who: Annotated[Viewer, Depends(viewer)]):
    config = request.app.state.config
    ticket_id = _ticket_id(job_id)
    with request.app.state.pool.connection() as conn:
        try:
            ticket = get_ticket(conn, ticket_id)
        except TicketNotFound:
            raise NotFound(f"there is no job {ticket_id}") from None
        if not is_job(config, ticket):
            raise NotFound(f"ticket {ticket_id} is a {ticket.metaservice}/{ticket.ticket_type} ticket, not a job")
        job = get_operation(conn, config, ticket_id)
        events = conn.execute(sql.CONSOLE_JOB_EVENTS, {"id": ticket_id, "limit": LOG_LINES}).fetchall()
    log = [{"at": e["at"], "entry": log_entry(config, ticket, e)} for e in events]
    return page(request, "job.html", who, nav="jobs", job=job, ticket=ticket, log=log, log_lines=LOG_LINES,
                state_name=config.state_name(ticket.metaservice, ticket.ticket_type, ticket.state))


@dataclass
class ExternalState:
    metaservice: str
    ticket_type: str
    state: int
    state_name: str | None
    held: int = 0
    abandoned: int = 0
    stalled: int = 0


def external_states(config, stats, workers) -> list[ExternalState]:
    """Per state worked by external workers (and any the table still counts): its tickets held now, and how
    often workers gave one up or went silent over one."""
    found = {(s.metaservice, s.ticket_type, s.state): ExternalState(
        s.metaservice, s.ticket_type, s.state, config.state_name(s.metaservice, s.ticket_type, s.state))
        for s in external_specs(config)}
    for row in stats:
        key = (row["metaservice"], row["ticket_type"], row["state"])
        state = found.setdefault(key, ExternalState(*key, config.state_name(*key)))
        state.abandoned, state.stalled = row["abandoned"], row["stalled"]
    for worker in workers:
        if worker["ticket_id"] is not None:
            key = (worker["metaservice"], worker["ticket_type"], worker["state"])
            found.setdefault(key, ExternalState(*key, config.state_name(*key))).held += 1
    return [found[key] for key in sorted(found)]


@router.get("/workers")
def workers_page(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        workers = list_workers(conn)
        stats = conn.execute(sql.CONSOLE_WORKER_STATE_STATS).fetchall()
    return page(request, "workers.html", who, nav="workers", workers=workers,
                states=external_states(config, stats, workers))


@router.get("/status-models")
def status_models_page(request: Request, who: Annotated[Viewer, Depends(viewer)],
                       object_name: Annotated[str | None, Query(alias="object")] = None):
    config = request.app.state.config
    if object_name is not None and object_name not in config.status_models:
        raise NotFound(f"there is no status model for object {object_name!r}")
    with request.app.state.pool.connection() as conn:
        counts = {r["object_name"]: r for r in conn.execute(sql.CONSOLE_STATUS_COUNTS, {"window": STATUS_WINDOW})}
        instances = conn.execute(sql.CONSOLE_STATUS_INSTANCES, {"object_name": object_name,
                                                                "limit": INSTANCES_SHOWN}).fetchall()
    names = sorted(set(config.status_models) | set(counts))
    return page(request, "status_models.html", who, nav="status", names=names, counts=counts,
                instances=instances, object_name=object_name, window=STATUS_WINDOW, shown=INSTANCES_SHOWN)


def _unread(conn, name=None) -> dict:
    rows = conn.execute(sql.CONSOLE_UNREAD, {"name": name, "window": UNREAD_WINDOW}).fetchall()
    return {r["name"]: (r["unread"], r["seen"] >= UNREAD_WINDOW) for r in rows}


@router.get("/people")
def people_page(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    with request.app.state.pool.connection() as conn:
        users = list_users(conn)
        unread = _unread(conn)
    return page(request, "people.html", who, nav="people", users=users, unread=unread, unread_window=UNREAD_WINDOW)


@router.get("/people/{name}")
def person_page(name: str, request: Request, who: Annotated[Viewer, Depends(viewer)]):
    with request.app.state.pool.connection() as conn:
        user = next((u for u in list_users(conn) if u["name"] == name), None)
        if user is None:
            raise NotFound(f"there is no user named {name!r}")
        messages = inbox(conn, name, include_read=True, limit=INBOX_SHOWN)
        unread = _unread(conn, name)[name]
    return page(request, "person.html", who, nav="people", user=user, messages=messages, unread=unread,
                shown=INBOX_SHOWN, unread_window=UNREAD_WINDOW)
