"""Reading tickets and their history."""

from common.errors import TicketNotFound
from common.store import sql
from common.tickets.outcomes import Ticket


def get_ticket(conn, ticket_id) -> Ticket:
    return found_ticket(conn.execute(sql.GET_TICKET, {"id": ticket_id}).fetchone(), ticket_id)


def found_ticket(row, ticket_id) -> Ticket:
    """The ticket of a row of sql.GET_TICKET, or TicketNotFound when there was none."""
    if row is None:
        raise TicketNotFound(ticket_id)
    return Ticket.from_row(row)


def get_events(conn, ticket_id) -> list[dict]:
    return conn.execute(sql.GET_EVENTS, {"id": ticket_id}).fetchall()


def get_assigned_user(conn, ticket_id):
    return get_ticket(conn, ticket_id).assigned_user


def list_tickets(conn, *, metaservice=None, ticket_type=None, state=None, open_only=False, limit=100,
                 before_id=None) -> list[Ticket]:
    """Tickets, newest first, filtered by whichever of the arguments are given; `before_id` pages on by keyset
    (the ids below the last one seen), which tickets created meanwhile cannot shift."""
    rows = conn.execute(sql.LIST_TICKETS, {"metaservice": metaservice, "ticket_type": ticket_type, "state": state,
                                           "open_only": open_only, "limit": limit, "before_id": before_id}).fetchall()
    return [Ticket.from_row(row) for row in rows]
