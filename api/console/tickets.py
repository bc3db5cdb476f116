"""Tickets: the list with filters, a payload search, a count that stays cheap on millions, and bulk actions on
everything a filter matches (screen 3); a ticket with its payload, history, family, notifications, webhook
deliveries and the actions the graph and the token allow (screen 4)."""

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from api.auth import acting_user
from api.console.render import is_partial, page
from api.console.session import NotFound, Refused, Viewer, actor, allowed, viewer
from api.console.types import shown_types
from api.errors import ApiError
from common.errors import BotfleetError, TicketNotFound
from common.store import sql
from common.tickets import bulk
from common.tickets.manual import accept_ticket, close_ticket, patch_ticket, send_ticket, set_assigned_user
from common.tickets.read import get_events, get_ticket
from common.tickets.search import STATUSES, TicketFilter, count_of_page, ticket_page

router = APIRouter()

PAGE_SIZE = 50
# What a ticket's page lists of its children, notifications and webhook deliveries (newest kept).
RELATED_LIMIT = 100
# The filter's fields, as the list's URL and forms name them.
FILTER_FIELDS = ("metaservice", "type", "state", "status", "group", "assignee", "creator", "created_from",
                 "created_to", "q", "contains")
MAX_TEXT = 200  # a filter's text, in characters


def _text(value: str | None, name: str) -> str | None:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise Refused(f"{name}: at most {MAX_TEXT} characters", 422)
    return value or None


def parse_time(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """A date (the whole day: its start, or with `end` the next day's) or an ISO datetime (UTC unless it says)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
        at = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(f"{name}: {value!r} is not a date (2026-05-01) or a date and time (2026-05-01T14:30)",
                      422) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_int(value: str | None, name: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise Refused(f"{name}: {value!r} is not a whole number", 422)
    return int(value)


def parse_filter(config, values: dict) -> TicketFilter:
    """The filter a request asks for (query or form fields, empty ones ignored); a 422 naming the field
    for anything it cannot mean."""
    metaservice, type_name = _text(values.get("metaservice"), "metaservice"), _text(values.get("type"), "type")
    state = parse_int(values.get("state"), "state")
    known = {**config.builtin_types, **config.types}
    if metaservice is not None and metaservice not in {m for m, _ in known}:
        raise Refused(f"metaservice: there is no metaservice {metaservice!r}", 422)
    if type_name is not None:
        kinds = [k for k in known.values() if k.name == type_name and metaservice in (None, k.metaservice)]
        if not kinds:
            raise Refused(f"type: there is no ticket type {metaservice or '*'}/{type_name}", 422)
        if state is not None and len(kinds) == 1 and state not in kinds[0].states:
            raise Refused(f"state: {kinds[0].metaservice}/{type_name} has no state {state}", 422)
    status = (values.get("status") or "open").strip()
    if status not in STATUSES:
        raise Refused(f"status: {status!r} is not one of {', '.join(STATUSES)}", 422)
    contains = _text(values.get("contains"), "contains")
    if contains is not None:
        try:
            contains = json.loads(contains)
        except ValueError as exc:
            raise Refused(f"contains: not JSON ({exc})", 422) from None
        if not isinstance(contains, dict):
            raise Refused('contains: a JSON object, like {"customer": 42}', 422)
    return TicketFilter(metaservice=metaservice, ticket_type=type_name, state=state, status=status,
                        group=_text(values.get("group"), "group"), assignee=_text(values.get("assignee"), "assignee"),
                        creator=_text(values.get("creator"), "creator"),
                        created_from=parse_time(values.get("created_from"), "created_from"),
                        created_to=parse_time(values.get("created_to"), "created_to", end=True),
                        q=_text(values.get("q"), "q"), contains=contains)


def filter_values(values) -> dict:
    """The filter's fields as given (for the form, the links and the bulk form's hidden fields)."""
    return {name: values.get(name, "") or "" for name in FILTER_FIELDS}


def query_of(fields: dict, **more) -> str:
    return urlencode({k: v for k, v in {**fields, **more}.items() if v not in ("", None)})


def _kind(config, ticket_filter: TicketFilter):
    return config.find_type(ticket_filter.metaservice, ticket_filter.ticket_type)


@router.get("/tickets")
def tickets_page(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    config = request.app.state.config
    values = dict(request.query_params)
    ticket_filter = parse_filter(config, values)
    before = parse_int(values.get("before"), "before")
    with request.app.state.pool.connection() as conn:
        found = ticket_page(conn, ticket_filter, before=before, limit=PAGE_SIZE)
        count = count_of_page(conn, ticket_filter, found)
    fields = filter_values(values)
    context = {"nav": "tickets", "found": found, "count": count, "fields": fields, "before": before,
               "kind": _kind(config, ticket_filter), "ticket_filter": ticket_filter, "types": shown_types(config),
               "next_url": None if found.next_before is None else f"?{query_of(fields, before=found.next_before)}"}
    return page(request, "tickets_rows.html" if is_partial(request) else "tickets.html", who, **context)


def _bulk_request(request: Request, who: Viewer, values: dict):
    allowed(request, who, "update")
    config = request.app.state.config
    ticket_filter = parse_filter(config, values)
    if ticket_filter.status == "closed":
        raise Refused("status: a bulk action changes open tickets; the filter shows closed ones", 422)
    action = values.get("action")
    if action == "send":
        to_state = parse_int(values.get("to_state"), "to_state")
        if to_state is None:
            raise Refused("to_state: choose the state to send the tickets to", 422)
        try:
            bulk.check_send(config, ticket_filter, to_state)
        except BotfleetError as exc:
            raise Refused(f"to_state: {exc}", 422) from None
        return ticket_filter, bulk.send_plans(config, to_state), {"action": "send", "to_state": to_state}
    if action == "close":
        reason = (values.get("reason") or "").strip()
        if not reason:
            raise Refused("reason: closing tickets needs a reason", 422)
        return ticket_filter, bulk.close_plans(reason), {"action": "close", "reason": reason}
    raise Refused(f"action: {action!r} is not send or close", 422)


def _describe(fields: dict) -> str:
    shown = {k: v for k, v in fields.items() if v and k != "status"}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "no filter: every open ticket"


def _on_connection(pool, function, *args):
    with pool.connection() as conn:
        return function(conn, *args)


@router.post("/tickets/bulk/preview")
async def bulk_preview(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    """Step 1: how many open tickets the action would change, for the person to confirm."""
    values = dict(await request.form())
    ticket_filter, _, action = _bulk_request(request, who, values)
    found = await run_in_threadpool(_on_connection, request.app.state.pool, bulk.preview, ticket_filter)
    config = request.app.state.config
    fields = filter_values(values)
    return page(request, "bulk_confirm.html", who, preview=found, act=action, fields=fields,
                kind=_kind(config, ticket_filter), described=_describe(fields))


@router.post("/tickets/bulk")
async def bulk_act(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    """Step 2: act on every open ticket the filter matches, up to the newest one of the preview, as long as
    no more match than the person confirmed."""
    values = dict(await request.form())
    ticket_filter, plan_of, action = _bulk_request(request, who, values)
    confirmed, max_id = parse_int(values.get("confirm_count"), "confirm_count"), parse_int(values.get("max_id"), "max_id")
    if confirmed is None or max_id is None:
        raise Refused("confirm_count: preview the action first, then confirm the count", 422)
    pool, config = request.app.state.pool, request.app.state.config
    now = await run_in_threadpool(_on_connection, pool, bulk.still_matching, ticket_filter, max_id)
    if now > confirmed:
        raise Refused(f"confirm_count: {now:,} tickets match now, more than the {confirmed:,} confirmed; "
                      "preview again", 409)
    try:
        result = await run_in_threadpool(bulk.act_on_matching, pool, config, ticket_filter, plan_of, max_id=max_id,
                                  actor=actor(who))
    except BotfleetError as exc:
        raise Refused(str(exc), 409) from None
    return page(request, "bulk_result.html", who, result=result, act=action, confirmed=confirmed)


# -- a ticket ----------------------------------------------------------------------------------------------

def ticket_view(pool, config, ticket_id: int) -> dict:
    with pool.connection() as conn:
        try:
            ticket = get_ticket(conn, ticket_id)
        except TicketNotFound:
            raise NotFound(f"there is no ticket {ticket_id}") from None
        related = {"id": ticket_id, "limit": RELATED_LIMIT}
        events = get_events(conn, ticket_id)
        children = conn.execute(sql.CONSOLE_TICKET_CHILDREN, related).fetchall()
        notifications = conn.execute(sql.CONSOLE_TICKET_NOTIFICATIONS, related).fetchall()
        webhooks = conn.execute(sql.CONSOLE_TICKET_WEBHOOKS, related).fetchall()
    kind = config.find_type(ticket.metaservice, ticket.ticket_type)
    return {"ticket": ticket, "kind": kind, "events": events, "children": children, "notifications": notifications,
            "webhooks": webhooks, "payload_json": json.dumps(ticket.payload, indent=2, ensure_ascii=False,
                                                             sort_keys=True),
            "state_name": lambda code: config.state_name(ticket.metaservice, ticket.ticket_type, code) or "?"}


@router.get("/tickets/{ticket_id}")
def ticket_screen(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)]):
    view = ticket_view(request.app.state.pool, request.app.state.config, ticket_id)
    return page(request, "ticket.html", who, nav="tickets", **view)


def _acted(request: Request, who: Viewer, ticket_id: int, change):
    """Run a change of the ticket (refused without the update scope), then show the ticket again."""
    allowed(request, who, "update")
    pool, config = request.app.state.pool, request.app.state.config
    try:
        change(pool, config)
    except TicketNotFound:
        raise NotFound(f"there is no ticket {ticket_id}") from None
    except BotfleetError as exc:
        raise Refused(str(exc), 409) from None
    return page(request, "ticket_body.html", who, done=True, **ticket_view(pool, config, ticket_id))


def _as_user(request: Request, who: Viewer, named: str | None, name: str) -> str | None:
    """The user an action acts as, by the API's rule (api/auth.py acting_user): the token's own user, anybody
    else only with the admin scope."""
    request.state.caller = (who.token_name, who.scopes, who.user)
    try:
        return acting_user(request, named, name)
    except ApiError as exc:
        raise Refused(exc.message, exc.status) from None


@router.post("/tickets/{ticket_id}/send")
def send(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)],
         to_state: Annotated[str, Form()] = ""):
    to = parse_int(to_state, "to_state")
    return _acted(request, who, ticket_id,
                  lambda pool, config: send_ticket(pool, config, ticket_id, to, actor=actor(who)))


@router.post("/tickets/{ticket_id}/accept")
def accept(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)],
           user: Annotated[str, Form()] = ""):
    allowed(request, who, "update")
    member = _as_user(request, who, user.strip() or None, "user")
    if member is None:
        raise Refused(f"user: token {who.token_name!r} is bound to no user; name the member who accepts", 422)
    return _acted(request, who, ticket_id,
                  lambda pool, config: accept_ticket(pool, config, ticket_id, member, actor=actor(who)))


@router.post("/tickets/{ticket_id}/assign")
def assign(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)],
           user: Annotated[str, Form()] = ""):
    allowed(request, who, "update")
    named = user.strip() or None
    if named is not None:
        named = _as_user(request, who, named, "user")
    return _acted(request, who, ticket_id,
                  lambda pool, config: set_assigned_user(pool, config, ticket_id, named, actor=actor(who)))


@router.post("/tickets/{ticket_id}/close")
def close(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)],
          reason: Annotated[str, Form()] = ""):
    if not reason.strip():
        allowed(request, who, "update")
        raise Refused("reason: closing a ticket needs a reason", 422)
    return _acted(request, who, ticket_id,
                  lambda pool, config: close_ticket(pool, config, ticket_id, reason.strip(), actor=actor(who)))


@router.post("/tickets/{ticket_id}/payload")
def edit_payload(ticket_id: int, request: Request, who: Annotated[Viewer, Depends(viewer)],
                 payload: Annotated[str, Form()] = "", original: Annotated[str, Form()] = ""):
    """The person's changes to the payload as the page showed it (`original`), written as a merge patch onto the
    payload as it is now: a change a bot or another person made meanwhile to other keys is kept, not undone."""
    allowed(request, who, "update")
    wanted, shown = _json_object(payload, "payload"), _json_object(original, "original")
    patch = patch_between(shown, wanted)

    def change(pool, config):
        if patch:
            patch_ticket(pool, config, ticket_id, payload=patch, actor=actor(who))
    return _acted(request, who, ticket_id, change)


def _json_object(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Refused(f"{name}: not JSON ({exc})", 422) from None
    if not isinstance(value, dict):
        raise Refused(f"{name}: a JSON object", 422)
    return value


def patch_between(old: dict, new: dict) -> dict:
    """The JSON Merge Patch (RFC 7396) that turns `old` into `new`: changed keys, removed ones as null. (A
    null value in `new` cannot be told from a removal: merge patch has no way to write one.)"""
    patch = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            both_objects = isinstance(value, dict) and isinstance(old.get(key), dict)
            patch[key] = patch_between(old[key], value) if both_objects else value
    return patch
