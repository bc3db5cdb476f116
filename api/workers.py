"""Pulling workers (seed 002): workers outside the fleet ask for the tickets of a state marked
`worker: external`, report progress, and finish them. A worker is known by the name in the path; the
process using it sends a Worker-Session header of its own (a second process under a name in use is 409)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from api.auth import require
from api.errors import ApiError
from api.models import ERROR_RESPONSES, FinishIn, ProgressIn, ProgressOut, Ticket, TicketId, WorkerOut
from api.tickets import ticket_out
from common.tickets.workers import WORKER_NAME, finish_ticket, list_workers, next_ticket, record_progress

router = APIRouter(tags=["workers"])

WorkerName = Annotated[str, Path(pattern=WORKER_NAME, description="the worker's name, not its address")]
Session = Annotated[str, Header(min_length=1, max_length=200, description="one per worker process (workers/client.py "
                                "makes one): a second process under a name in use gets 409")]
TYPE_PATTERN = r"^[^/\s]+/[^/\s]+$"


@router.post("/workers/{name}/next", response_model=Ticket, responses={
    **ERROR_RESPONSES, 204: {"description": "no ticket is due in the type's external states"}})
def next_work(name: WorkerName, request: Request, _: Annotated[str, Depends(require("work"))],
              type: Annotated[str, Query(pattern=TYPE_PATTERN, description="<metaservice>/<type>")],
              worker_session: Session):
    """The oldest due ticket of the type's external states, now held by this worker (204: none). Asking
    while holding a ticket abandons it: it is queued again, one attempt more, and may come straight back."""
    config = request.app.state.config
    metaservice, _, ticket_type = type.partition("/")
    if (metaservice, ticket_type) not in config.types:
        raise ApiError(422, "unknown_type", f"there is no ticket type {type}", "type")
    with request.app.state.pool.connection() as conn:
        ticket = next_ticket(conn, config, name, worker_session, metaservice, ticket_type)
    if ticket is None:
        return Response(status_code=204)
    return ticket_out(config, ticket)


@router.post("/workers/{name}/tickets/{ticket_id}/progress", response_model=ProgressOut, responses=ERROR_RESPONSES)
def progress(name: WorkerName, ticket_id: TicketId, body: ProgressIn, request: Request,
             _: Annotated[str, Depends(require("work"))], worker_session: Session) -> ProgressOut:
    """Record the time of a progress message once; it also keeps the hold from stalling."""
    with request.app.state.pool.connection() as conn:
        recorded = record_progress(conn, request.app.state.config, name, worker_session, ticket_id, body.message)
    return ProgressOut(recorded=recorded)


@router.post("/workers/{name}/tickets/{ticket_id}/finish", response_model=Ticket, responses=ERROR_RESPONSES)
def finish(name: WorkerName, ticket_id: TicketId, request: Request, _: Annotated[str, Depends(require("work"))],
           worker_session: Session, body: FinishIn | None = None) -> dict:
    """The held ticket takes its normal next state, or `to` (409 if the graph forbids it, or the worker no
    longer holds the ticket; nothing is written then)."""
    body = body or FinishIn()
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        ticket = finish_ticket(conn, config, name, worker_session, ticket_id, to=body.to, payload=body.payload)
    return ticket_out(config, ticket)


@router.get("/workers", response_model=list[WorkerOut], responses=ERROR_RESPONSES)
def workers(request: Request, _: Annotated[str, Depends(require("read"))]) -> list[WorkerOut]:
    """The workers known by name, with their last contact and the ticket each holds."""
    with request.app.state.pool.connection() as conn:
        rows = list_workers(conn)
    return [WorkerOut(name=r["name"], first_seen_at=r["first_seen_at"], last_contact_at=r["last_contact_at"],
                      ticket_id=r["ticket_id"], metaservice=r["metaservice"], type=r["ticket_type"], state=r["state"],
                      stalls_at=r["stalls_at"]) for r in rows]
