"""proceed_ticket: run a bot's handler on a claimed ticket and plan what to write. Never raises for handler errors."""

import logging
import time
from dataclasses import dataclass

from common.tickets.outcomes import Context, Outcome, Plan, Ticket, outcome_of, plan

log = logging.getLogger(__name__)


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
