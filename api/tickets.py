"""/tickets: create, read, list, accept and close tickets; every write goes through the same ticket
operations as the CLI's and the bots', so the graph, the groups and the lifetime rules are the same."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.aio import fetch_one
from api.auth import acting_user, require
from api.errors import ApiError
from api.models import (
    CREATE_RESPONSES,
    ERROR_RESPONSES,
    AcceptIn,
    CloseIn,
    Event,
    StateCode,
    Ticket,
    TicketId,
    TicketIn,
    TicketPage,
    TicketPatch,
)
from common.store import sql
from common.tickets.create import submit_params, submit_ticket, submitted
from common.tickets.manual import accept_ticket, close_ticket, patch_ticket
from common.tickets.read import found_ticket, get_events, get_ticket, list_tickets

router = APIRouter(tags=["tickets"])


def ticket_out(config, ticket) -> dict:
    """A ticket as the routes answer it: a Ticket's fields, which the route's response_model validates and
    writes out (a Ticket built here would be validated twice)."""
    return {"id": ticket.id, "metaservice": ticket.metaservice, "type": ticket.ticket_type, "state": ticket.state,
            "state_name": config.state_name(ticket.metaservice, ticket.ticket_type, ticket.state),
            "payload": ticket.payload, "creator": ticket.creator, "group": ticket.group_role,
            "assigned_user": ticket.assigned_user, "parent_id": ticket.parent_id, "waiting_for": ticket.waiting_for,
            "step": ticket.step, "created_at": ticket.created_at, "state_entered_at": ticket.state_entered_at,
            "deadline_at": ticket.deadline_at, "closed_at": ticket.closed_at, "start_after": ticket.start_after,
            "callback_url": ticket.callback_url}


@router.post("/tickets", status_code=201, response_model=Ticket, responses=CREATE_RESPONSES)
async def create(body: TicketIn, request: Request, response: Response,
                 token: Annotated[str, Depends(require("submit"))],
                 idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None) -> dict:
    """Create a ticket in its type's initial state (sleeping until start_after, if later). With an
    Idempotency-Key, a retry of the same request gets the ticket the first one made, not a second ticket."""
    config = request.app.state.config
    if (body.metaservice, body.type) not in config.types:
        raise ApiError(422, "unknown_type", f"there is no ticket type {body.metaservice}/{body.type}", "type")
    ticket = await create_once(request, response, token, idempotency_key, body.metaservice, body.type,
                               body.payload, creator=body.creator, group_role=body.group,
                               start_after=body.start_after, callback_url=body.callback_url)
    return ticket_out(config, ticket)


async def create_once(request, response, token, idempotency_key, metaservice, ticket_type, payload, *,
                      location="/tickets", **fields):
    """submit_ticket for a request (refused while the fleet is locked), made once per Idempotency-Key: a
    replay gets the first ticket, also while locked, as it writes nothing. Sets Location."""
    config = request.app.state.config
    if fields.get("callback_url") is not None:  # the webhook bot POSTs there: only where fleet.yaml allows
        refusal = config.webhooks.callback_refusal(fields["callback_url"])
        if refusal is not None:
            raise ApiError(422, "callback_url_refused", refusal, "callback_url")
    fields["creator"] = acting_user(request, fields.get("creator"), "creator") or f"api:{token}"
    group = fields.get("group_role")
    if group is not None and not (await fetch_one(request, sql.GROUP_EXISTS, {"name": group}))["found"]:
        # A ticket asked of a group that does not exist could never be accepted.
        raise ApiError(422, "unknown_group", f"there is no group {group!r} (botfleet group add {group})", "group")
    if idempotency_key is None:
        ticket = submitted(await fetch_one(request, sql.SUBMIT_TICKETS,
                                           submit_params(config, metaservice, ticket_type, payload, **fields)))
    else:
        ticket = await run_in_threadpool(_create_keyed, request, response, token, idempotency_key, metaservice,
                                         ticket_type, payload, fields)
    response.headers["Location"] = f"{location}/{ticket.id}"
    return ticket


def _create_keyed(request, response, token, idempotency_key, metaservice, ticket_type, payload, fields):
    """The first request with this key creates the ticket; the key's advisory lock makes a concurrent retry
    wait for it, and then find its ticket."""
    keyed = {"token": token, "key": idempotency_key}
    with request.app.state.pool.connection() as conn, conn.transaction():
        conn.execute(sql.LOCK_IDEMPOTENCY_KEY, keyed)
        found = conn.execute(sql.FIND_IDEMPOTENCY_KEY, keyed).fetchone()
        if found is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return get_ticket(conn, found["ticket_id"])
        ticket = submit_ticket(conn, request.app.state.config, metaservice, ticket_type, payload, **fields)
        conn.execute(sql.ADD_IDEMPOTENCY_KEY, {**keyed, "ticket_id": ticket.id})
        return ticket


@router.get("/tickets/{ticket_id}", response_model=Ticket, responses=ERROR_RESPONSES)
async def read(ticket_id: TicketId, request: Request, _: Annotated[str, Depends(require("read"))]) -> dict:
    row = await fetch_one(request, sql.GET_TICKET, {"id": ticket_id})
    return ticket_out(request.app.state.config, found_ticket(row, ticket_id))


@router.get("/tickets/{ticket_id}/events", response_model=list[Event], responses=ERROR_RESPONSES)
def history(ticket_id: TicketId, request: Request, _: Annotated[str, Depends(require("read"))]) -> list[Event]:
    """The ticket's history, oldest first."""
    with request.app.state.pool.connection() as conn:
        get_ticket(conn, ticket_id)  # 404 for a ticket that does not exist, not an empty history
        return [Event(**{name: row[name] for name in Event.model_fields}) for row in get_events(conn, ticket_id)]


@router.get("/tickets", response_model=TicketPage, responses=ERROR_RESPONSES)
def listing(request: Request, _: Annotated[str, Depends(require("read"))],
            metaservice: Annotated[str | None, Query(min_length=1)] = None,
            type: Annotated[str | None, Query(min_length=1)] = None,
            state: Annotated[StateCode | None, Query()] = None,
            open: Annotated[bool, Query(description="only tickets not closed")] = False,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$",
                                                description="next_cursor of the page before")] = None) -> TicketPage:
    """Tickets, newest first, a page at a time. Pages follow ids, so tickets created meanwhile do not shift them."""
    with request.app.state.pool.connection() as conn:
        tickets = list_tickets(conn, metaservice=metaservice, ticket_type=type, state=state, open_only=open,
                               limit=limit + 1, before_id=int(cursor) if cursor else None)
    page = tickets[:limit]
    return TicketPage(items=[ticket_out(request.app.state.config, t) for t in page],
                      next_cursor=str(page[-1].id) if len(tickets) > limit else None)


@router.post("/tickets/{ticket_id}/accept", response_model=Ticket, responses=ERROR_RESPONSES)
def accept(ticket_id: TicketId, body: AcceptIn, request: Request,
           token: Annotated[str, Depends(require("update"))]) -> dict:
    """A member of the ticket's group accepts it and becomes its assignee: the user of a token bound to one;
    another user only with the admin scope."""
    user = acting_user(request, body.user, "user")
    # The pool, not a connection of it: a wait for a bot to hand the ticket back holds none (manual.py).
    ticket = accept_ticket(request.app.state.pool, request.app.state.config, ticket_id, user, actor=f"api:{token}")
    return ticket_out(request.app.state.config, ticket)


@router.post("/tickets/{ticket_id}/close", response_model=Ticket, responses=ERROR_RESPONSES)
def close(ticket_id: TicketId, body: CloseIn, request: Request, token: Annotated[str, Depends(require("update"))]) -> dict:
    """Close an open ticket where it stands, with a reason."""
    ticket = close_ticket(request.app.state.pool, request.app.state.config, ticket_id, body.reason,
                          actor=f"api:{token}")
    return ticket_out(request.app.state.config, ticket)


@router.patch("/tickets/{ticket_id}", response_model=Ticket, responses=ERROR_RESPONSES)
def update(ticket_id: TicketId, body: TicketPatch, request: Request, token: Annotated[str, Depends(require("update"))]) -> dict:
    """Change only the fields sent, with one event: the payload by JSON Merge Patch, the state along the
    type's graph (a move the graph forbids is 409 and changes nothing). Concurrent patches of one ticket
    are applied one after the other: none is lost."""
    if body.payload is None and body.state is None:
        raise ApiError(422, "invalid", "send payload, state, or both", "payload")
    ticket = patch_ticket(request.app.state.pool, request.app.state.config, ticket_id, payload=body.payload,
                          state=body.state, actor=f"api:{token}")
    return ticket_out(request.app.state.config, ticket)
