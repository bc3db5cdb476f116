"""The ticket operations every bot and tool shares: create, claim, proceed, and write outcomes.

The seed's names are the public API: create_ticket, send_ticket, proceed_ticket,
get_current_ticket_list, add_ticket_to_proceeded_list, get_assigned_user, set_assigned_user
(check_ticket_list, the sweep, lives in the bot runtime).
"""

import logging
import time
from dataclasses import dataclass

import psycopg

from psycopg.types.json import Jsonb

from . import sql
from .builtin import BUILTIN_TYPES
from .errors import BotfleetError, TicketNotFound, TransitionNotAllowed
from .outcomes import Context, Outcome, PendingTicket, Plan, Ticket, outcome_of, plan

log = logging.getLogger(__name__)


def type_index(config) -> dict:
    """(metaservice, type) -> TicketType for the config's types plus the built-in ones."""
    return {**config.types, **{t.key: t for t in BUILTIN_TYPES}}


def _ticket_type(types, metaservice, name):
    try:
        return types[(metaservice, name)]
    except KeyError:
        raise BotfleetError(f"unknown ticket type {metaservice}/{name}") from None


# -- creating ------------------------------------------------------------------------------------


def create_tickets(conn, types, metaservice, ticket_type, payloads, *, creator=None, group_role=None,
                   parent_id=None) -> list[int]:
    """Create tickets in their type's initial state; each commits with its 'created' event and a NOTIFY."""
    kind = _ticket_type(types, metaservice, ticket_type)
    for index, payload in enumerate(payloads):
        if not isinstance(payload, dict):
            raise BotfleetError(f"payload {index} must be a JSON object, got {type(payload).__name__}")
    params = {
        "metaservice": metaservice, "ticket_type": ticket_type, "state": kind.initial,
        "payloads": [Jsonb(p) for p in payloads], "creator": creator,
        "group_role": group_role or kind.group_role, "parent_id": parent_id,
        "lifetime_s": kind.lifetime_s, "notification_frequency_s": kind.notification_frequency_s,
    }
    with conn.transaction():
        return [row["id"] for row in conn.execute(sql.CREATE_TICKETS, params).fetchall()]


def create_ticket(conn, types, metaservice, ticket_type, payload=None, *, creator=None, group_role=None,
                  parent_id=None) -> int:
    return create_tickets(conn, types, metaservice, ticket_type, [payload or {}], creator=creator,
                          group_role=group_role, parent_id=parent_id)[0]


# -- reading -------------------------------------------------------------------------------------


def get_ticket(conn, ticket_id) -> Ticket:
    row = conn.execute(sql.GET_TICKET, {"id": ticket_id}).fetchone()
    if row is None:
        raise TicketNotFound(ticket_id)
    return Ticket.from_row(row)


def get_events(conn, ticket_id) -> list[dict]:
    return conn.execute(sql.GET_EVENTS, {"id": ticket_id}).fetchall()


def get_assigned_user(conn, ticket_id):
    return get_ticket(conn, ticket_id).assigned_user


# -- claiming ------------------------------------------------------------------------------------


def get_current_ticket_list(conn, spec, owner, limit) -> list[Ticket]:
    """Lease up to `limit` due tickets of the bot's state to `owner` (one bot process)."""
    rows = conn.execute(sql.CLAIM, {
        "metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "state": spec.state,
        "limit": limit, "owner": owner, "lease_s": spec.lease_s,
    }).fetchall()
    if not conn.autocommit:
        conn.commit()
    return [Ticket.from_row(row) for row in rows]


# -- proceeding ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One handler run, ready to be written: the claimed ticket, its plan and the side effects."""

    ticket: Ticket
    plan: Plan
    payload: dict | None = None
    assignee: tuple | None = None
    handler_error: bool = False
    hop_s: float | None = None  # from entering the state to the handler's start
    handler_s: float = 0.0


def proceed_ticket(ticket: Ticket, ticket_type, handler, spec) -> Step:
    """Run the handler on a claimed ticket and decide what to write. Never raises for handler errors."""
    started = time.time()
    # state_entered_at is taken just before the previous step's commit: close enough to a hop.
    hop_s = max(0.0, started - ticket.state_entered_at.timestamp()) if ticket.state_entered_at else None
    ctx = Context(ticket, ticket_type, spec.name)
    try:
        outcome = outcome_of(handler(ticket, ctx), ctx)
        result = plan(ticket, ticket_type, outcome, retries=spec.retries, retry_backoff_s=spec.retry_backoff_s,
                      children=ctx.children)
    except Exception as exc:  # a handler that raises or returns nonsense is recorded and retried, never lost
        log.warning("handler of bot %s failed on ticket %s: %r", spec.name, ticket.id, exc)
        outcome = Outcome("error", reason=f"{type(exc).__name__}: {exc}")
        result = plan(ticket, ticket_type, outcome, retries=spec.retries, retry_backoff_s=spec.retry_backoff_s)
        return Step(ticket, result, handler_error=True, hop_s=hop_s, handler_s=time.time() - started)
    return Step(ticket, result, payload=ticket.payload if ctx.payload_changed() else None,
                assignee=ctx.assignee, hop_s=hop_s, handler_s=time.time() - started)


# -- writing outcomes ------------------------------------------------------------------------------


def _apply_params(steps, owner, actor):
    def waiting_id(step):
        target = step.plan.waiting_for
        return target.id if isinstance(target, PendingTicket) else target

    return {
        "owner": owner, "actor": actor,
        "ids": [s.ticket.id for s in steps], "steps": [s.ticket.step for s in steps],
        "from_states": [s.ticket.state for s in steps], "to_states": [s.plan.to_state for s in steps],
        "closes": [s.plan.closes for s in steps], "due_in_s": [s.plan.due_in_s for s in steps],
        "waiting_for": [waiting_id(s) for s in steps],
        "payloads": [Jsonb(s.payload) if s.payload is not None else None for s in steps],
        "set_assignee": [s.assignee is not None for s in steps],
        "assignees": [s.assignee[0] if s.assignee else None for s in steps],
        "attempts": [s.plan.attempts for s in steps], "kinds": [s.plan.kind for s in steps],
        "details": [Jsonb(s.plan.detail) if s.plan.detail is not None else None for s in steps],
        "results": [None for _ in steps],
    }


def _insert_children(conn, types, step, actor):
    for child in step.plan.children:
        child.id = create_ticket(conn, types, child.metaservice, child.ticket_type, child.payload,
                                 creator=actor, group_role=child.group_role, parent_id=step.ticket.id)


@dataclass
class Written:
    applied: list  # rows of the tickets whose outcome was written
    stale: list  # steps whose ticket had moved on (another process already wrote this step)


def add_ticket_to_proceeded_list(conn, types, steps, owner, actor) -> Written:
    """Write a batch of outcomes; each ticket's change, events and NOTIFY commit together.

    On an autocommit connection (a bot's) a batch without child tickets is one statement and one
    durable commit; on any other connection it joins the caller's transaction. A step whose ticket
    is no longer at the claimed step (or no longer leased by `owner`) is skipped: some other
    process already applied it, and writing it again would duplicate the transition.
    """
    applied = []
    simple = [s for s in steps if not s.plan.children]
    if simple:
        applied += conn.execute(sql.APPLY_OUTCOMES, _apply_params(simple, owner, actor)).fetchall()
    for step in (s for s in steps if s.plan.children):
        # Children are written only if their parent's outcome is: the transaction undoes them otherwise.
        with conn.transaction() as transaction:
            _insert_children(conn, types, step, actor)
            rows = conn.execute(sql.APPLY_OUTCOMES, _apply_params([step], owner, actor)).fetchall()
            if not rows:
                raise psycopg.Rollback(transaction)
            applied += rows
    wake_closed_waits(conn, _closed_with_waiters(applied), actor)
    applied_ids = {r["id"] for r in applied}
    return Written(applied, [s for s in steps if s.ticket.id not in applied_ids])


def _closed_with_waiters(applied) -> list:
    """Closed tickets someone waits for: closed here with waiters, or awaited here and already closed."""
    closed_here = {r["id"] for r in applied if r["closes"]}
    ids = {r["id"] for r in applied if r["closes"] and r["has_waiters"]}
    for row in applied:
        ids.update(row["closed_awaited"])
        if row["waiting_for"] in closed_here:  # waiter and awaited in one batch
            ids.add(row["waiting_for"])
    return sorted(ids)


def wake_closed_waits(conn, closed_ids, actor):
    """Make the tickets that wait for any of `closed_ids` due again. A lost wake is caught by sweeps."""
    if closed_ids:
        conn.execute(sql.WAKE_WAITERS, {"ids": closed_ids, "actor": actor})


# -- manual moves (people, the CLI and the API) ----------------------------------------------------


def _lock_unleased(conn, ticket_id) -> Ticket:
    row = conn.execute(sql.LOCK_TICKET, {"id": ticket_id}).fetchone()
    if row is None:
        raise TicketNotFound(ticket_id)
    ticket = Ticket.from_row(row)
    if ticket.closed_at is not None:
        raise BotfleetError(f"ticket {ticket_id} is closed (state {ticket.state})")
    if row["leased"]:
        raise BotfleetError(f"ticket {ticket_id} is being processed by {ticket.lease_owner}; try again shortly")
    if ticket.lease_owner is not None:  # an expired lease of a dead process
        conn.execute(sql.DROP_EXPIRED_LEASE, {"id": ticket_id})
        ticket.lease_owner = None
    return ticket


def send_ticket(conn, types, ticket_id, to=None, *, actor="manual") -> Ticket:
    """Move an unleased ticket to its normal next state (or `to`) by hand; refused if the graph forbids it."""
    with conn.transaction():
        ticket = _lock_unleased(conn, ticket_id)
        kind = _ticket_type(types, ticket.metaservice, ticket.ticket_type)
        if to is not None and not kind.allows(ticket.state, to):
            raise TransitionNotAllowed(f"{kind.metaservice}/{kind.name}", ticket.state, to)
        step_plan = plan(ticket, kind, Outcome("send", to_state=to), retries=0, retry_backoff_s=0)
        if step_plan.kind != "transitioned":
            raise BotfleetError(f"ticket {ticket_id}: {step_plan.detail['reason']}")
        add_ticket_to_proceeded_list(conn, types, [Step(ticket, step_plan)], None, actor)
    return get_ticket(conn, ticket_id)


def set_assigned_user(conn, types, ticket_id, user, *, actor="manual") -> Ticket:
    with conn.transaction():
        ticket = _lock_unleased(conn, ticket_id)
        # The state's bot looks at the ticket again (due now) unless it waits for another ticket.
        step_plan = Plan(to_state=ticket.state, kind="assigned", attempts=ticket.attempts,
                         waiting_for=ticket.waiting_for)
        add_ticket_to_proceeded_list(conn, types, [Step(ticket, step_plan, assignee=(user,))], None, actor)
    return get_ticket(conn, ticket_id)
