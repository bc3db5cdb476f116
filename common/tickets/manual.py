"""send_ticket and set_assigned_user by hand: people, the CLI and the API move tickets no bot holds."""

import contextlib
import time

import psycopg

from common.errors import BotfleetError, TicketNotFound, TransitionNotAllowed
from common.store import sql
from common.tickets.outcomes import Outcome, Plan, Ticket, plan
from common.tickets.payload import encode_payload, storable_text
from common.tickets.proceed import Step
from common.tickets.read import get_ticket
from common.tickets.record import add_ticket_to_proceeded_list

# How long a person's action waits for a bot to hand back a ticket it is processing: a handler usually
# holds one for milliseconds, so refusing at once would only make people retry by hand.
LEASE_WAIT_S = 5.0


def _sessions(db):
    """A connection for each try of a wait. A pool's (the API's) is taken for a try and given back for the pause,
    so that a wait of seconds holds none that other requests, token checks and the API's own heartbeat need;
    a single connection (the CLI's, a bot's) serves every try."""
    if isinstance(db, psycopg.Connection):
        return lambda: contextlib.nullcontext(db)
    return db.connection


def _on_unleased(db, ticket_id, act, *, actor, wait_s=LEASE_WAIT_S) -> Ticket:
    """Run act(conn, ticket) in a transaction that holds the ticket's row, once no live bot holds its lease
    and no other session its row (past the session's lock_timeout): retried with a growing pause while one
    does, then refused after `wait_s`, changing nothing. A ticket an external worker holds (for minutes,
    maybe) is taken back from it at once: people come first. `db` is a connection or a pool; the ticket as
    it is then."""
    deadline = time.monotonic() + wait_s
    pause_s = 0.02
    while True:
        with _sessions(db)() as conn:
            try:
                with conn.transaction():
                    row = conn.execute(sql.LOCK_TICKET, {"id": ticket_id}).fetchone()
                    if row is None:
                        raise TicketNotFound(ticket_id)
                    if row["closed_at"] is not None:
                        raise BotfleetError(f"ticket {ticket_id} is closed (state {row['state']})")
                    holder = None
                    ticket = take_unleased(conn, row, actor)
                    if ticket is not None:
                        act(conn, ticket)
                    else:
                        holder = f"being processed by {row['lease_owner']}"
            except psycopg.errors.LockNotAvailable:  # someone's transaction (psql, a tool) holds a row it needs
                holder = "locked by another session"
            if holder is None:
                return get_ticket(conn, ticket_id)
        if time.monotonic() + pause_s > deadline:
            raise BotfleetError(f"ticket {ticket_id} is {holder} (waited {wait_s:g}s); try again shortly")
        time.sleep(pause_s)
        pause_s = min(2 * pause_s, 0.5)


def take_unleased(conn, row, actor) -> Ticket | None:
    """The ticket of a row locked by the caller (sql.LOCK_TICKET's columns), made ready for a change by hand:
    taken back from an external worker at once (people come first), a dead process's expired lease dropped;
    None while a live bot holds it."""
    ticket = Ticket.from_row(row)
    if (ticket.lease_owner or "").startswith(sql.WORKER_LEASE_PREFIX):
        conn.execute(sql.RELEASE_HOLD, {"ticket_id": ticket.id, "kind": "released", "actor": actor})
        return Ticket.from_row(conn.execute(sql.LOCK_TICKET, {"id": ticket.id}).fetchone())
    if row["leased"]:
        return None
    if ticket.lease_owner is not None:  # an expired lease of a dead process
        conn.execute(sql.DROP_EXPIRED_LEASE, {"id": ticket.id})
        ticket.lease_owner = None
    return ticket


def move_plan(config, ticket, to) -> Plan:
    """The plan of a move by hand to the normal next state (or `to`); refused if the graph forbids it."""
    kind = config.ticket_type(ticket.metaservice, ticket.ticket_type)
    if to is not None and not kind.allows(ticket.state, to):
        raise TransitionNotAllowed(f"{kind.metaservice}/{kind.name}", ticket.state, to)
    step_plan = plan(ticket, kind, Outcome("send", to_state=to), retries=0, retry_backoff_s=0)
    if step_plan.kind != "transitioned":
        raise BotfleetError(f"ticket {ticket.id}: {step_plan.detail['reason']}")
    return step_plan


def _stay_plan(ticket, kind, detail=None) -> Plan:
    """The plan of a change by hand that keeps the state: the state's bot looks at the ticket again (due
    now), unless it waits for another ticket."""
    return Plan(to_state=ticket.state, kind=kind, detail=detail, attempts=ticket.attempts,
                waiting_for=ticket.waiting_for)


def send_ticket(db, config, ticket_id, to=None, *, actor="manual", wait_s=LEASE_WAIT_S) -> Ticket:
    """Move an unleased ticket to its normal next state (or `to`) by hand; refused if the graph forbids it.
    `db`, here and below: a connection, or a pool to take one from for each try (_sessions)."""
    def move(conn, ticket):
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, move_plan(config, ticket, to))], None, actor)
    return _on_unleased(db, ticket_id, move, actor=actor, wait_s=wait_s)


def set_assigned_user(db, config, ticket_id, user, *, actor="manual", kind="assigned",
                      wait_s=LEASE_WAIT_S) -> Ticket:
    """Assign an unleased ticket to a member of its group (None: unassign); refused, changing nothing, for
    anyone else. kind "accepted": the member accepts it (refused if another member already has)."""
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise BotfleetError(f"the assigned user must be a non-empty name, got {user!r}")
    def assign(conn, ticket):
        if kind == "accepted" and ticket.assigned_user not in (None, user):
            raise BotfleetError(f"ticket {ticket_id} was already accepted by {ticket.assigned_user}")
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, _stay_plan(ticket, kind), assignee=(user, kind))],
                                     None, actor)
    return _on_unleased(db, ticket_id, assign, actor=actor, wait_s=wait_s)


def accept_ticket(db, config, ticket_id, user, *, actor=None, wait_s=LEASE_WAIT_S) -> Ticket:
    """A member of the ticket's group accepts it: the member becomes its assignee."""
    if user is None:
        raise BotfleetError("accepting a ticket needs the member who accepts it")
    return set_assigned_user(db, config, ticket_id, user, actor=actor or user, kind="accepted", wait_s=wait_s)


def close_ticket(db, config, ticket_id, reason: str, *, actor="manual", wait_s=LEASE_WAIT_S) -> Ticket:
    """Close an open ticket no bot holds, where it stands (a recurring ticket that must stop, a request
    withdrawn); its 'closed' event records who and why, and whoever waits for it is woken."""
    check_close_reason(reason)
    def close(conn, ticket):
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, close_plan(ticket, reason))], None, actor)
    return _on_unleased(db, ticket_id, close, actor=actor, wait_s=wait_s)


def check_close_reason(reason) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise BotfleetError("closing a ticket by hand needs a reason")


def close_plan(ticket, reason: str) -> Plan:
    """The plan of closing a ticket by hand where it stands; its 'closed' event says why."""
    return Plan(to_state=ticket.state, kind="closed", detail={"reason": storable_text(reason)}, closes=True,
                attempts=ticket.attempts)


def merge_patch(target: dict, patch: dict) -> dict:
    """JSON Merge Patch (RFC 7396) of a payload: keys set, nested objects merged, null removing a key."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def patched_payload(config, ticket, patch: dict | None) -> str | None:
    """The ticket's payload with a merge patch applied, as the JSON text a step writes (checked against the
    payload limit); None when there is no patch."""
    return None if patch is None else encode_payload(merge_patch(ticket.payload, patch), config.max_payload_bytes)


def patch_ticket(db, config, ticket_id, *, payload: dict | None = None, state: int | None = None,
                 message: str | None = None, actor="manual", wait_s=LEASE_WAIT_S) -> Ticket:
    """Change only what is given: the payload by merge patch, the state along the graph; one event. The
    ticket's row is locked for the change, so concurrent patches of one ticket are applied one after the
    other, each to what the one before left: none is lost."""
    if payload is None and state is None and message is None:
        raise BotfleetError("a patch needs a payload, a state or a message")

    def change(conn, ticket):
        detail = {"payload": payload} if payload is not None else {}
        if message is not None:  # a line of the ticket's history (a job's log)
            detail["message"] = storable_text(message)
        if state is not None and state != ticket.state:
            step_plan = move_plan(config, ticket, state)
            step_plan.detail = {**(step_plan.detail or {}), **detail} or None
        else:
            step_plan = _stay_plan(ticket, "patched", detail or {"state": state})
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, step_plan,
                                                          payload=patched_payload(config, ticket, payload))],
                                     None, actor)
    return _on_unleased(db, ticket_id, change, actor=actor, wait_s=wait_s)
