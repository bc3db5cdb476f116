"""create_ticket: new tickets in their type's initial state, each with its 'created' event and a NOTIFY."""

from common.access.fleet_lock import FleetLock, FleetLocked
from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE
from common.store import sql
from common.tickets.outcomes import Ticket
from common.tickets.payload import encode_payload

ERROR_TICKET_TYPE = (ERROR_METASERVICE, ERROR_TYPE)


def _create_params(config, metaservice, ticket_type, payloads, *, creator=None, group_role=None, parent_id=None,
                   start_after=None, callback_url=None, job_name=None, object_type=None, object_id=None,
                   ids=None) -> dict:
    kind = config.ticket_type(metaservice, ticket_type)
    texts = [encode_payload(payload, config.max_payload_bytes, f"payload {index}" if len(payloads) > 1 else "payload")
             for index, payload in enumerate(payloads)]
    return {
        "metaservice": metaservice, "ticket_type": ticket_type, "state": kind.initial,
        # One JSON array of the payloads, as text: one parameter that needs no array adapter.
        "payloads": "[" + ",".join(texts) + "]", "creator": creator,
        "group_role": group_role or kind.group_role, "parent_id": parent_id,
        # A job's group is not asked to accept it: its submitter's code does the work (seed 000).
        "rounds": (group_role or kind.group_role) is not None and not kind.job,
        "job_name": job_name, "object_type": object_type, "object_id": object_id,
        "lifetime_s": kind.lifetime_s, "notification_frequency_s": kind.notification_frequency_s,
        "actor": creator, "start_after": start_after, "callback_url": callback_url,
        "mail": config.mail is not None,
        "ids": ids,  # ids taken beforehand (sql.NEXT_TICKET_ID), one per payload, or None for new ones
    }


def _execute(conn, statement, params):
    """One statement, committed as create_ticket always has: on its own on an autocommit connection (or in the
    caller's transaction), and in a transaction of its own on a connection that would leave it open."""
    if conn.autocommit:
        return conn.execute(statement, params)
    with conn.transaction():
        return conn.execute(statement, params)


def create_tickets(conn, config, metaservice, ticket_type, payloads, **fields) -> list[int]:
    """Create tickets in their type's initial state; each commits with its 'created' event, the first round
    of acceptance notifications to its group, and a NOTIFY, all in one statement. With a later `start_after`
    (a time of the one clock) they sleep until then; a `callback_url` is told of each of their state changes.
    Fields: creator, group_role, parent_id, start_after, callback_url, ids (taken from sql.NEXT_TICKET_ID)."""
    params = _create_params(config, metaservice, ticket_type, payloads, **fields)
    statement = sql.CREATE_ERROR_TICKETS if (metaservice, ticket_type) == ERROR_TICKET_TYPE else sql.CREATE_TICKETS
    if statement is sql.CREATE_ERROR_TICKETS and params["ids"] is not None:
        raise ValueError("error tickets are not planned children: they take no ids")
    return [row["id"] for row in _execute(conn, statement, params).fetchall()]


def create_ticket(conn, config, metaservice, ticket_type, payload=None, **fields) -> int:
    return create_tickets(conn, config, metaservice, ticket_type, [payload or {}], **fields)[0]


def submit_params(config, metaservice, ticket_type, payload, **fields) -> dict:
    """The parameters of sql.SUBMIT_TICKETS for one ticket asked for from outside the fleet; the API's
    event loop runs the statement itself, everything else calls submit_ticket."""
    return _create_params(config, metaservice, ticket_type, [payload], **fields)


def submitted(row) -> Ticket:
    """The ticket sql.SUBMIT_TICKETS created, or FleetLocked (and nothing written) with the lock that refused it."""
    if row["id"] is None:
        raise FleetLocked(FleetLock.from_row(row, prefix="lock_"))
    return Ticket.from_row(row)


def submit_ticket(conn, config, metaservice, ticket_type, payload, **fields) -> Ticket:
    """A ticket asked for from outside the fleet: created as create_ticket does, but only while the fleet is
    open; returned as read back by the same statement."""
    return submitted(_execute(conn, sql.SUBMIT_TICKETS,
                              submit_params(config, metaservice, ticket_type, payload, **fields)).fetchone())
