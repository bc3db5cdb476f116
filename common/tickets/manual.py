"""send_ticket and set_assigned_user by hand: people, the CLI and the API move tickets no bot holds."""

from common.errors import BotfleetError, TicketNotFound, TransitionNotAllowed
from common.store import sql
from common.tickets.outcomes import Outcome, Plan, Ticket, plan
from common.tickets.payload import storable_text
from common.tickets.proceed import Step
from common.tickets.read import get_ticket
from common.tickets.record import add_ticket_to_proceeded_list


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


def send_ticket(conn, config, ticket_id, to=None, *, actor="manual") -> Ticket:
    """Move an unleased ticket to its normal next state (or `to`) by hand; refused if the graph forbids it."""
    with conn.transaction():
        ticket = _lock_unleased(conn, ticket_id)
        kind = config.ticket_type(ticket.metaservice, ticket.ticket_type)
        if to is not None and not kind.allows(ticket.state, to):
            raise TransitionNotAllowed(f"{kind.metaservice}/{kind.name}", ticket.state, to)
        step_plan = plan(ticket, kind, Outcome("send", to_state=to), retries=0, retry_backoff_s=0)
        if step_plan.kind != "transitioned":
            raise BotfleetError(f"ticket {ticket_id}: {step_plan.detail['reason']}")
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, step_plan)], None, actor)
    return get_ticket(conn, ticket_id)


def set_assigned_user(conn, config, ticket_id, user, *, actor="manual", kind="assigned") -> Ticket:
    """Assign an unleased ticket to a member of its group (None: unassign); refused, changing nothing, for
    anyone else. kind "accepted": the member accepts it (refused if another member already has)."""
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise BotfleetError(f"the assigned user must be a non-empty name, got {user!r}")
    with conn.transaction():
        ticket = _lock_unleased(conn, ticket_id)
        if kind == "accepted" and ticket.assigned_user not in (None, user):
            raise BotfleetError(f"ticket {ticket_id} was already accepted by {ticket.assigned_user}")
        # The state's bot looks at the ticket again (due now) unless it waits for another ticket.
        step_plan = Plan(to_state=ticket.state, kind=kind, attempts=ticket.attempts, waiting_for=ticket.waiting_for)
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, step_plan, assignee=(user, kind))], None, actor)
    return get_ticket(conn, ticket_id)


def accept_ticket(conn, config, ticket_id, user, *, actor=None) -> Ticket:
    """A member of the ticket's group accepts it: the member becomes its assignee."""
    if user is None:
        raise BotfleetError("accepting a ticket needs the member who accepts it")
    return set_assigned_user(conn, config, ticket_id, user, actor=actor or user, kind="accepted")


def close_ticket(conn, config, ticket_id, reason: str, *, actor="manual") -> Ticket:
    """Close an open ticket no bot holds, where it stands (a recurring ticket that must stop, a request
    withdrawn); its 'closed' event records who and why, and whoever waits for it is woken."""
    if not isinstance(reason, str) or not reason.strip():
        raise BotfleetError("closing a ticket by hand needs a reason")
    with conn.transaction():
        ticket = _lock_unleased(conn, ticket_id)
        step_plan = Plan(to_state=ticket.state, kind="closed", detail={"reason": storable_text(reason)}, closes=True,
                         attempts=ticket.attempts)
        add_ticket_to_proceeded_list(conn, config, [Step(ticket, step_plan)], None, actor)
    return get_ticket(conn, ticket_id)
