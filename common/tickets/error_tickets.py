"""Error tickets of tickets: at most one open per ticket (the database's uq_tickets_open_error). A later reason
is added to the open one's `reasons`, and the ticket waits for that one: resolving it lets the ticket's bot try
again, whatever number of reasons it gathered."""

import psycopg

from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE
from common.store import sql
from common.tickets.create import create_ticket
from common.tickets.outcomes import PendingTicket

OPEN_ERROR_INDEX = "uq_tickets_open_error"


def is_error_ticket(child: PendingTicket) -> bool:
    return (child.metaservice, child.ticket_type) == (ERROR_METASERVICE, ERROR_TYPE)


def raise_error_ticket(conn, config, child: PendingTicket, *, parent_id: int, actor) -> int:
    """The id of the ticket's open error ticket, told `child`'s reason, else of a new one made of `child`."""
    reason = child.payload["reason"]
    folded = _fold(conn, parent_id, reason)
    if folded is not None:
        return folded
    try:
        with conn.transaction():  # a savepoint: a concurrent raise for the same ticket may have won
            return create_ticket(conn, config, child.metaservice, child.ticket_type,
                                 {**child.payload, "reasons": [reason]}, creator=actor,
                                 group_role=child.group_role, parent_id=parent_id)
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != OPEN_ERROR_INDEX:
            raise
    folded = _fold(conn, parent_id, reason)
    if folded is None:  # the winner's was closed meanwhile: there is no open one to fold into after all
        return raise_error_ticket(conn, config, child, parent_id=parent_id, actor=actor)
    return folded


def _fold(conn, parent_id, reason):
    row = conn.execute(sql.FOLD_ERROR_REASON, {"parent_id": parent_id, "reason": reason}).fetchone()
    return None if row is None else row["id"]
