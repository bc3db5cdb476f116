"""`botfleet`: the command line for people and scripts.

Exit codes: 0 success, 1 error, 2 usage, 75 database unreachable or schema behind, 78 bad config.
"""

import argparse
import json
import logging
import os
import sys
from datetime import datetime

import psycopg

from . import config as config_module
from . import database, engine, sql
from .errors import EX_TEMPFAIL, BotfleetError

log = logging.getLogger("botfleet")


def _config(args):
    return config_module.load(args.config)


def _conn(args, cfg=None):
    cfg = cfg or _config(args)
    return database.connect(database.resolve_url(cfg))


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _print_json(data):
    print(json.dumps(data, default=_json_default, indent=2, sort_keys=True))


# -- config and database ------------------------------------------------------------------------


def cmd_config_check(args):
    cfg = _config(args)
    config_module.check_handlers(cfg)
    print(f"config {cfg.root} is valid: {len(cfg.types)} ticket type(s), {len(cfg.bots)} bot(s)")


def cmd_db_upgrade(args):
    cfg = _config(args)
    url = database.resolve_url(cfg)
    database.upgrade(url, cfg)
    print("database schema is up to date; ticket types, status codes and bots written")


def cmd_db_check(args):
    with _conn(args) as conn:
        database.check_schema(conn)
    print("database schema is up to date")


# -- bots and the fleet -------------------------------------------------------------------------


def cmd_bot_run(args):
    from .runtime import BotRuntime

    cfg = _config(args)
    spec = cfg.bot(args.name)
    if spec.handler:
        config_module.import_handler(spec)  # a bad handler is a config error: exit 78 before any connection
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {spec.name} %(message)s")
    runtime = BotRuntime(cfg, spec, database.resolve_url(cfg))
    runtime.install_signal_handlers()
    return runtime.run()


def cmd_bot_enable(args, enabled=True):
    cfg = _config(args)
    cfg.bot(args.name)  # a ConfigError naming the known bots when the name is wrong
    with _conn(args, cfg) as conn:
        if conn.execute(sql.SET_BOT_ENABLED, {"name": args.name, "enabled": enabled}).fetchone() is None:
            raise BotfleetError(f"bot {args.name} is not in the database yet: run `botfleet db upgrade`")
        conn.commit()
    print(f"bot {args.name} {'enabled' if enabled else 'disabled: the watchdog leaves it alone'}")


def cmd_bot_disable(args):
    return cmd_bot_enable(args, enabled=False)


def cmd_watchdog_run(args):
    from watchdog.run import Watchdog

    cfg = _config(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s watchdog %(message)s")
    runner = Watchdog(cfg, database.resolve_url(cfg), supervisor_socket())
    runner.install_signal_handlers()
    return runner.run()


def supervisor_socket():
    """The supervisord this process belongs to (supervisord tells its children), else the project's."""
    url = os.environ.get("SUPERVISOR_SERVER_URL", "")
    return url[len("unix://"):] if url.startswith("unix://") else database.PROJECT_ROOT / "var" / "supervisor.sock"


def cmd_check(args):
    from watchdog import health

    cfg = _config(args)
    # A monitoring probe must never start a database: only report that none runs.
    url = database.resolve_url(cfg, start=False)
    code, line = (health.check(url, cfg.watchdog) if url else
                  (health.CRITICAL, f"CRITICAL: database unavailable: no DATABASE_URL and the embedded "
                                    f"PostgreSQL ({database.embedded_pgdata()}) is not running"))
    print(line)
    return code


def cmd_zabbix_discovery(args):
    cfg = _config(args)
    data = [{"{#BOT}": s.name, "{#METASERVICE}": s.metaservice, "{#TICKET_TYPE}": s.ticket_type,
             "{#STATE}": str(s.state), "{#STATE_NAME}": s.state_name} for s in sorted(cfg.bots.values(), key=lambda s: s.name)]
    print(json.dumps({"data": data}))


def cmd_supervisor_render(args):
    from . import supervisor_render

    cfg = _config(args)
    return supervisor_render.main(cfg, check=args.check, out_dir=args.out)


def cmd_up(args):
    from . import fleet

    return fleet.up(_config(args), daemon=args.daemon)


def cmd_down(args):
    from . import fleet

    return fleet.down(_config(args), keep_database=args.keep_database)


def cmd_status(args):
    from . import status

    cfg = _config(args)
    with _conn(args, cfg) as conn:
        report = status.collect(conn, cfg)
    if args.json:
        _print_json(report)
    else:
        print(status.format_text(report))


# -- tickets ----------------------------------------------------------------------------------


def ticket_json(ticket, types, events=None) -> dict:
    kind = types.get((ticket.metaservice, ticket.ticket_type))
    state = kind.states.get(ticket.state) if kind else None
    data = {
        "id": ticket.id, "metaservice": ticket.metaservice, "type": ticket.ticket_type,
        "state": ticket.state, "state_name": state.name if state else None, "payload": ticket.payload,
        "creator": ticket.creator, "group_role": ticket.group_role, "assigned_user": ticket.assigned_user,
        "parent_id": ticket.parent_id, "created_at": ticket.created_at,
        "state_entered_at": ticket.state_entered_at, "deadline_at": ticket.deadline_at,
        "waiting_for": ticket.waiting_for, "attempts": ticket.attempts, "closed_at": ticket.closed_at,
    }
    if events is not None:
        data["events"] = [{"kind": e["kind"], "from_state": e["from_state"], "to_state": e["to_state"],
                           "at": e["at"], "actor": e["actor"], "detail": e["detail"]} for e in events]
    return data


def _payload(text):
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BotfleetError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BotfleetError("--payload must be a JSON object")
    return payload


def cmd_ticket_create(args):
    cfg = _config(args)
    payload = _payload(args.payload)
    with _conn(args, cfg) as conn:
        ticket_id = engine.create_ticket(conn, engine.type_index(cfg), args.metaservice, args.type, payload,
                                         creator=args.creator)
    print(ticket_id)


def cmd_ticket_show(args):
    cfg = _config(args)
    types = engine.type_index(cfg)
    with _conn(args, cfg) as conn:
        data = ticket_json(engine.get_ticket(conn, args.id), types, engine.get_events(conn, args.id))
    if args.json:
        _print_json(data)
        return
    print(f"ticket {data['id']}: {data['metaservice']}/{data['type']} state {data['state']} "
          f"({data['state_name']}){' closed ' + data['closed_at'].isoformat() if data['closed_at'] else ''}")
    print(f"  payload: {json.dumps(data['payload'])}")
    for event in data["events"]:
        move = (f"{event['from_state']} -> {event['to_state']}" if event["from_state"] != event["to_state"]
                else f"at {event['to_state']}")
        detail = f" {json.dumps(event['detail'])}" if event["detail"] else ""
        print(f"  {event['at'].isoformat()}  {event['kind']:<12} {move:<10} by {event['actor']}{detail}")


def cmd_ticket_list(args):
    cfg = _config(args)
    types = engine.type_index(cfg)
    with _conn(args, cfg) as conn:
        rows = conn.execute(sql.LIST_TICKETS, {
            "metaservice": args.metaservice, "ticket_type": args.type, "state": args.state,
            "open_only": args.open, "limit": args.limit}).fetchall()
    tickets = [ticket_json(engine.Ticket.from_row(r), types) for r in rows]
    if args.json:
        _print_json(tickets)
        return
    for t in tickets:
        closed = f" closed {t['closed_at']:%Y-%m-%d %H:%M:%S}" if t["closed_at"] else ""
        print(f"{t['id']:>8}  {t['metaservice']}/{t['type']}  {t['state']} {t['state_name']}{closed}")


def cmd_ticket_send(args):
    cfg = _config(args)
    with _conn(args, cfg) as conn:
        ticket = engine.send_ticket(conn, engine.type_index(cfg), args.id, args.to, actor=args.actor)
    print(f"ticket {ticket.id} is now in state {ticket.state}")


def cmd_ticket_assign(args):
    cfg = _config(args)
    with _conn(args, cfg) as conn:
        ticket = engine.set_assigned_user(conn, engine.type_index(cfg), args.id, args.user, actor=args.actor)
    print(f"ticket {ticket.id} is assigned to {ticket.assigned_user}")


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botfleet", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="DIR",
                        help="config folder (default: $BOTFLEET_CONFIG, else ./config, else the shipped one)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(parent, name, func, help_text):
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    group = sub.add_parser("config", help="check the config folder").add_subparsers(dest="sub", required=True)
    command(group, "check", cmd_config_check, "validate every config file and import every handler")

    group = sub.add_parser("db", help="database schema").add_subparsers(dest="sub", required=True)
    command(group, "upgrade", cmd_db_upgrade, "migrate the schema to the newest revision and sync the config")
    command(group, "check", cmd_db_check, "exit 75 unless the schema is at the newest revision")

    group = sub.add_parser("bot", help="run a bot").add_subparsers(dest="sub", required=True)
    p = command(group, "run", cmd_bot_run, "run one bot in the foreground (supervisord does this)")
    p.add_argument("name", help="bot name, <metaservice>-<type>-<code>-<state name>")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    p = command(group, "disable", cmd_bot_disable, "mark a bot disabled: the watchdog leaves it alone")
    p.add_argument("name")
    p = command(group, "enable", cmd_bot_enable, "mark a disabled bot enabled again")
    p.add_argument("name")

    group = sub.add_parser("watchdog", help="the watchdog").add_subparsers(dest="sub", required=True)
    p = command(group, "run", cmd_watchdog_run, "check the bots, restart the dead and hung, serve /metrics")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    command(sub, "check", cmd_check, "exit 0 if the watchdog is alive and every enabled bot is healthy "
                                     "(for Zabbix and people); prints one line")
    group = sub.add_parser("zabbix", help="Zabbix helpers").add_subparsers(dest="sub", required=True)
    command(group, "discovery", cmd_zabbix_discovery, "low-level discovery JSON of the bots")

    group = sub.add_parser("supervisor", help="supervisord config").add_subparsers(dest="sub", required=True)
    p = command(group, "render", cmd_supervisor_render, "write supervisord.d/*.conf from config/bots")
    p.add_argument("--check", action="store_true", help="exit 1 if the rendered files are stale, write nothing")
    p.add_argument("--out", metavar="DIR", help="folder to write into (default: supervisord.d)")

    p = command(sub, "up", cmd_up, "start the database if embedded, upgrade, render and run supervisord")
    p.add_argument("--daemon", action="store_true", help="return once every program is RUNNING")
    p = command(sub, "down", cmd_down, "stop supervisord and every bot, then the embedded database")
    p.add_argument("--keep-database", action="store_true", help="leave the embedded database running")

    p = command(sub, "status", cmd_status, "each bot's liveness and counts, and tickets per state")
    p.add_argument("--json", action="store_true")

    group = sub.add_parser("ticket", help="create, show, list and move tickets").add_subparsers(
        dest="sub", required=True)
    p = command(group, "create", cmd_ticket_create, "create a ticket and print its id")
    p.add_argument("metaservice")
    p.add_argument("type")
    p.add_argument("--payload", default="{}", help="JSON object")
    p.add_argument("--creator", default="cli")
    p = command(group, "show", cmd_ticket_show, "a ticket with its event history")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = command(group, "list", cmd_ticket_list, "tickets, newest first")
    p.add_argument("--metaservice")
    p.add_argument("--type")
    p.add_argument("--state", type=int)
    p.add_argument("--open", action="store_true", help="only tickets not closed")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(group, "send", cmd_ticket_send, "move a ticket to its normal next state or --to STATE")
    p.add_argument("id", type=int)
    p.add_argument("--to", type=int)
    p.add_argument("--actor", default="cli")
    p = command(group, "assign", cmd_ticket_assign, "assign a ticket to a user")
    p.add_argument("id", type=int)
    p.add_argument("user")
    p.add_argument("--actor", default="cli")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except BotfleetError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.OperationalError as exc:
        print(f"botfleet: database unavailable: {str(exc).strip()}", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
