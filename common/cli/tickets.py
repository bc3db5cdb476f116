"""`botfleet ticket ...`: create, show, list, send and assign tickets from a shell."""

import json
import sys
from pathlib import Path

from common.cli.shared import connection, load_config, print_json
from common.config.builtin import ERROR_METASERVICE
from common.errors import BotfleetError
from common.people.directory import require_group
from common.tickets.create import create_ticket
from common.tickets.manual import accept_ticket, close_ticket, send_ticket, set_assigned_user
from common.tickets.read import get_events, get_ticket, list_tickets


def ticket_json(ticket, config, events=None) -> dict:
    data = {
        "id": ticket.id, "metaservice": ticket.metaservice, "type": ticket.ticket_type, "state": ticket.state,
        "state_name": config.state_name(ticket.metaservice, ticket.ticket_type, ticket.state),
        "payload": ticket.payload,
        "creator": ticket.creator, "group_role": ticket.group_role, "assigned_user": ticket.assigned_user,
        "parent_id": ticket.parent_id, "created_at": ticket.created_at,
        "state_entered_at": ticket.state_entered_at, "deadline_at": ticket.deadline_at,
        "waiting_for": ticket.waiting_for, "attempts": ticket.attempts, "closed_at": ticket.closed_at,
    }
    if events is not None:
        data["events"] = [{"kind": e["kind"], "from_state": e["from_state"], "to_state": e["to_state"],
                           "at": e["at"], "actor": e["actor"], "detail": e["detail"]} for e in events]
    return data


def _state_label(data) -> str:
    """The state's name, or why there is none: a state (or type) the config does not have (any more). The
    JSON keeps state_name null."""
    if data["state_name"] is not None:
        return data["state_name"]
    return f"unknown: {data['metaservice']}/{data['type']} has no state {data['state']} in this config"


def _payload(text):
    """--payload: JSON text, @FILE for a file's, or - for standard input's."""
    source = "--payload"
    if text == "-":
        source, text = "standard input", sys.stdin.read()
    elif text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise BotfleetError(f"--payload {text}: cannot read {source}: {exc.strerror}") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BotfleetError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BotfleetError(f"{source} must hold a JSON object, not {type(payload).__name__}")
    return payload


def cmd_ticket_create(args):
    cfg = load_config(args)
    if args.metaservice == ERROR_METASERVICE:
        raise BotfleetError(f"{ERROR_METASERVICE}/{args.type} tickets are raised by bots for tickets they cannot "
                            "move on; create a ticket of one of your own types")
    payload = _payload(args.payload)
    with connection(cfg) as conn:
        if args.group is not None:
            require_group(conn, args.group)
        ticket_id = create_ticket(conn, cfg, args.metaservice, args.type, payload, creator=args.creator,
                                  group_role=args.group)
    print(ticket_id)


def cmd_ticket_show(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        data = ticket_json(get_ticket(conn, args.id), cfg, get_events(conn, args.id))
    if args.json:
        print_json(data)
        return
    print(f"ticket {data['id']}: {data['metaservice']}/{data['type']} state {data['state']} "
          f"({_state_label(data)}){' closed ' + data['closed_at'].isoformat() if data['closed_at'] else ''}")
    print(f"  payload: {json.dumps(data['payload'])}")
    for event in data["events"]:
        move = (f"{event['from_state']} -> {event['to_state']}" if event["from_state"] != event["to_state"]
                else f"at {event['to_state']}")
        detail = f" {json.dumps(event['detail'])}" if event["detail"] else ""
        print(f"  {event['at'].isoformat()}  {event['kind']:<12} {move:<10} by {event['actor']}{detail}")


def cmd_ticket_list(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        found = list_tickets(conn, metaservice=args.metaservice, ticket_type=args.type, state=args.state,
                             open_only=args.open, limit=args.limit)
    tickets = [ticket_json(ticket, cfg) for ticket in found]
    if args.json:
        print_json(tickets)
        return
    for t in tickets:
        closed = f" closed {t['closed_at']:%Y-%m-%d %H:%M:%S}" if t["closed_at"] else ""
        print(f"{t['id']:>8}  {t['metaservice']}/{t['type']}  {t['state']} {t['state_name'] or '(unknown)'}{closed}")


def cmd_ticket_send(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        ticket = send_ticket(conn, cfg, args.id, args.to, actor=args.actor)
    print(f"ticket {ticket.id} is now in state {ticket.state}")


def cmd_ticket_assign(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        ticket = set_assigned_user(conn, cfg, args.id, args.user, actor=args.actor)
    print(f"ticket {ticket.id} is assigned to {ticket.assigned_user}")


def cmd_ticket_accept(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        ticket = accept_ticket(conn, cfg, args.id, args.user)
    print(f"ticket {ticket.id} is accepted by {ticket.assigned_user}")


def cmd_ticket_close(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        ticket = close_ticket(conn, cfg, args.id, args.reason, actor=args.actor)
    print(f"ticket {ticket.id} is closed in state {ticket.state}")
