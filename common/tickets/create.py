"""create_ticket: new tickets in their type's initial state, each with its 'created' event and a NOTIFY."""

from common.store import sql
from common.tickets.payload import encode_payload


def create_tickets(conn, config, metaservice, ticket_type, payloads, *, creator=None, group_role=None,
                   parent_id=None, start_after=None, callback_url=None) -> list[int]:
    """Create tickets in their type's initial state; each commits with its 'created' event, the first round
    of acceptance notifications to its group, and a NOTIFY. With a later `start_after` (a time of the one
    clock) they sleep until then; a `callback_url` is told of each of their state changes."""
    kind = config.ticket_type(metaservice, ticket_type)
    texts = [encode_payload(payload, config.max_payload_bytes, f"payload {index}" if len(payloads) > 1 else "payload")
             for index, payload in enumerate(payloads)]
    params = {
        "metaservice": metaservice, "ticket_type": ticket_type, "state": kind.initial,
        "payloads": texts, "creator": creator,  # JSON text, cast to jsonb by the statement
        "group_role": group_role or kind.group_role, "parent_id": parent_id,
        "lifetime_s": kind.lifetime_s, "notification_frequency_s": kind.notification_frequency_s,
        "actor": creator, "start_after": start_after, "callback_url": callback_url,
    }
    with conn.transaction():
        return [row["id"] for row in conn.execute(sql.CREATE_TICKETS, params).fetchall()]


def create_ticket(conn, config, metaservice, ticket_type, payload=None, *, creator=None, group_role=None,
                  parent_id=None, start_after=None, callback_url=None) -> int:
    return create_tickets(conn, config, metaservice, ticket_type, [payload or {}], creator=creator,
                          group_role=group_role, parent_id=parent_id, start_after=start_after,
                          callback_url=callback_url)[0]
