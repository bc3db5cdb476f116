"""proceed_ticket: run a bot's handler on a claimed ticket and plan what to write. Never raises for handler errors."""

import logging
import time
from dataclasses import dataclass, field

from common.tickets.outcomes import (
    Context,
    Outcome,
    Plan,
    Ticket,
    as_timeout,
    escalate,
    outcome_of,
    plan,
    timeout_plan,
    timeout_text,
)
from common.tickets.payload import encode_payload, storable_text

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One handler run, ready to be written: the claimed ticket, its plan and the side effects."""

    ticket: Ticket
    plan: Plan
    payload: str | None = None  # the changed payload, as the JSON text written (encoded once, when checked)
    assignee: tuple | None = None
    notifications: list = field(default_factory=list)  # (user, text, kind) to write with the outcome
    bot_messages: list = field(default_factory=list)  # (bot, text, kind) to write with the outcome
    handler_error: bool = False
    hop_s: float | None = None  # from entering the state to the handler's start, by the one clock
    handler_s: float = 0.0


def proceed_ticket(ticket: Ticket, config, handler, spec, new_id=None) -> Step:
    """Run the handler on a claimed ticket and decide what to write. Never raises for handler errors.
    `new_id`: where the ids of the children it creates come from (ctx.create_ticket)."""
    ticket_type = config.ticket_type(spec.metaservice, spec.ticket_type)
    started = time.monotonic()
    # The state's age when the ticket was read, by the database's clock, plus the time since on ours:
    # state_entered_at is taken just before the previous step's commit, close enough to a hop.
    hop_s = (max(0.0, (ticket.read_at - ticket.state_entered_at).total_seconds() + started - ticket.read_at_mono)
             if ticket.read_at and ticket.state_entered_at else None)
    ctx = Context(ticket, ticket_type, spec.name, new_id)
    try:
        step = _planned_step(ticket, ticket_type, config, spec, ctx, handler(ticket, ctx))
    except Exception as exc:  # a handler that raises, returns nonsense or asks for what cannot be stored
        log.warning("handler of bot %s failed on ticket %s: %r", spec.name, ticket.id, exc)
        return failed_step(ticket, ticket_type, spec, f"{type(exc).__name__}: {exc}", hop_s, time.monotonic() - started)
    step.hop_s, step.handler_s = hop_s, time.monotonic() - started
    return step


def _planned_step(ticket: Ticket, ticket_type, config, spec, ctx: Context, returned) -> Step:
    """The step of what a handler returned, with what it did through ctx; raises for what cannot be written."""
    outcome = outcome_of(returned, ctx)
    payload = check_writable(config, ticket.payload if ctx.payload_changed() else None, ctx.children)
    result = plan(ticket, ticket_type, outcome, retries=spec.retries, retry_backoff_s=spec.retry_backoff_s,
                  children=ctx.children)
    return Step(ticket, result, payload=payload, assignee=ctx.assignee, notifications=ctx.notifications,
                bot_messages=ctx.bot_messages)


def check_writable(config, payload, children) -> str | None:
    """Refuse, before the batch is written, what the database would refuse: a bad payload, a child of a
    type that does not exist. Returns the payload's JSON text, to be written as it is."""
    text = None if payload is None else encode_payload(payload, config.max_payload_bytes, "the ticket's payload")
    for child in children:
        config.ticket_type(child.metaservice, child.ticket_type)
        encode_payload(child.payload, config.max_payload_bytes,
                       f"the payload of the new {child.metaservice}/{child.ticket_type} ticket")
    return text


def failed_step(ticket: Ticket, ticket_type, spec, reason: str, hop_s=None, handler_s=0.0) -> Step:
    """The step of a failed handler run: an error event, retried with backoff, then one error ticket.
    Nothing the handler asked for is written."""
    outcome = Outcome("error", reason=storable_text(reason))
    result = plan(ticket, ticket_type, outcome, retries=spec.retries, retry_backoff_s=spec.retry_backoff_s)
    return Step(ticket, result, handler_error=True, hop_s=hop_s, handler_s=handler_s)


def timeout_step(ticket: Ticket, config, spec, creator_is_user: bool, hook=None, new_id=None) -> Step:
    """ticket_timeout: the ticket's lifetime ran out; written once, whatever the outcome.

    `hook` is the type's own timeout handler (`ticket_timeout(ticket, ctx)` in the state's handler module).
    What it returns is the step, planned like a handler's outcome, with what it sent through ctx, recorded as
    the timeout (a move is a 'timeout' event) and with the creator's out-of-service message; None keeps the
    default. The default: the state's `on_timeout` next state, else the state kept and one error
    ticket; and the creator, if a user, gets one out-of-service message. A hook that raises or asks for what
    cannot be done gets the default, with its error in the step's detail: a timeout is never lost or retried."""
    ticket_type = config.ticket_type(spec.metaservice, spec.ticket_type)
    if hook is None:
        return _default_timeout(ticket, ticket_type, creator_is_user)
    ctx = Context(ticket, ticket_type, spec.name, new_id)
    try:
        returned = hook(ticket, ctx)
        if returned is None:  # the default, and what the hook sent goes with it
            step = _default_timeout(ticket, ticket_type, creator_is_user)
            step.notifications[:0] = ctx.notifications
            step.bot_messages = ctx.bot_messages
            return step
        step = _planned_step(ticket, ticket_type, config, spec, ctx, returned)
    except Exception as exc:
        log.warning("ticket_timeout of bot %s failed on ticket %s: %r; the default timeout applies",
                    spec.name, ticket.id, exc)
        return timeout_fallback(ticket, config, spec, creator_is_user, storable_text(f"{type(exc).__name__}: {exc}"))
    as_timeout(ticket, ticket_type, step.plan)
    if creator_is_user:  # the out-of-service message, as with the default, after what the hook sent
        step.notifications = [*step.notifications, (ticket.creator, timeout_text(ticket, ticket_type, step.plan),
                                                    "timeout")]
    return step


def timeout_fallback(ticket: Ticket, config, spec, creator_is_user: bool, hook_error: str) -> Step:
    """The default timeout, with why the type's own handler did not decide it (it raised, or overran
    handler_timeout) in the step's detail."""
    default = _default_timeout(ticket, config.ticket_type(spec.metaservice, spec.ticket_type), creator_is_user)
    default.plan.detail = {**(default.plan.detail or {}), "ticket_timeout_error": hook_error}
    return default


def _default_timeout(ticket: Ticket, ticket_type, creator_is_user: bool) -> Step:
    result = timeout_plan(ticket, ticket_type)
    notes = [(ticket.creator, timeout_text(ticket, ticket_type, result), "timeout")] if creator_is_user else []
    return Step(ticket, result, notifications=notes)


def unknown_state_step(ticket: Ticket, ticket_type) -> Step:
    """A ticket in a state its type does not have (code and database disagree, e.g. after an update):
    it keeps its state and gets one error ticket, which it waits for."""
    reason = (f"state {ticket.state} is not a state of {ticket_type.metaservice}/{ticket_type.name} in the "
              f"configuration running now (states: {', '.join(map(str, sorted(ticket_type.states)))})")
    return Step(ticket, escalate(ticket, ticket_type, reason))
