"""`botfleet`: the command line for people and scripts.

Exit codes: 0 success, 1 error, 2 usage, 75 database unreachable or schema behind, 78 bad config.
The commands that run a process import that process's package only when they run, so a bot
process loads the bot's code and nothing of the watchdog, the migrations or the embedded server.
"""

import argparse
import json
import logging
import os
import sys
from types import SimpleNamespace

import psycopg

from common.cli import lock, people, status_models, tickets, tokens, types, workers
from common.cli.shared import connection, load_config, load_config_for_monitoring, print_json, with_config_problem
from common.config.builtin import API_BOT
from common.config.handlers import check_handlers, import_handler
from common.errors import EX_TEMPFAIL, BotDisabled, BotfleetError
from common.store import sql
from common.store.connect import redacted
from common.store.revision import check_schema
from common.store.server import resolve_url

log = logging.getLogger("botfleet")


# -- config and database ------------------------------------------------------------------------


def cmd_config_check(args):
    cfg = load_config(args)
    check_handlers(cfg)
    status_models.warn_unreachable(cfg)
    print(f"config {cfg.root} is valid: {len(cfg.types)} ticket type(s), {len(cfg.bots)} bot(s)")
    if args.database:
        from common.fleet.lifecycle import check_connections

        url = resolve_url(cfg)
        print(f"database: {redacted(url)}")
        check_connections(cfg, url)


def cmd_db_upgrade(args):
    from common.store import migrate

    cfg = load_config(args)
    check_handlers(cfg)  # the same full check as `config check`: nothing is written for a fleet that cannot run
    migrate.upgrade(resolve_url(cfg), cfg)
    print("database schema is up to date; ticket types, status codes and bots written")


def cmd_db_check(args):
    with connection(load_config(args)) as conn:
        check_schema(conn)
    print("database schema is up to date")


# -- bots and the fleet -------------------------------------------------------------------------


def _log_to_stderr(args, name):
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {name} %(message)s")


def cmd_bot_run(args):
    from bots.runtime import BotRuntime

    cfg = load_config(args)
    spec = cfg.bot(args.name)
    if spec.duty == "api":  # the built-in bot that is the HTTP API
        return _serve_api(args, cfg, spec)
    # A bad handler is a config error: exit 78 before any connection.
    handler = import_handler(spec) if spec.handler else None
    _log_to_stderr(args, spec.name)
    with connection(cfg) as conn:
        _refuse_if_disabled(conn, spec)
    runtime = BotRuntime(cfg, spec, resolve_url(cfg), handler=handler)
    runtime.install_signal_handlers()
    code = runtime.run()
    # Leases are released and the bot deregistered; a handler thread still stuck in a handler must
    # not hold the process (the interpreter would wait for it at exit, past supervisord's patience).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _refuse_if_disabled(conn, spec):
    """A disabled bot started anyway (a restart of supervisord, `supervisorctl start`, another host's update)
    claims nothing: it exits at once with a code its rendered program does not restart (EX_DISABLED)."""
    check_schema(conn)  # a schema that is behind says so (exit 75) before the bots table is read
    if not conn.execute(sql.BOT_ENABLED, {"name": spec.name}).fetchone()["enabled"]:
        raise BotDisabled(f"bot {spec.name} is disabled in the database: not starting it "
                          f"(`botfleet bot enable {spec.name}` starts it again)")


def cmd_bot_enable(args, enabled=True):
    from common.fleet import control

    cfg = load_config(args)
    spec = cfg.bot(args.name)  # a ConfigError naming the known bots when the name is wrong
    with connection(cfg) as conn:
        if conn.execute(sql.SET_BOT_ENABLED, {"name": args.name, "enabled": enabled}).fetchone() is None:
            raise BotfleetError(f"bot {args.name} is not in the database yet: run `botfleet db upgrade`")
        conn.commit()
    # Marked first, so the watchdog never restarts a bot that is being stopped on purpose.
    print(f"bot {args.name} {'enabled' if enabled else 'disabled: stopped, and left alone by the watchdog'}; "
          f"{control.set_running(cfg, spec, enabled)}")


def cmd_bot_disable(args):
    return cmd_bot_enable(args, enabled=False)


def supervisor_socket(cfg):
    """The supervisord this process belongs to (supervisord tells its children), else the fleet's."""
    url = os.environ.get("SUPERVISOR_SERVER_URL", "")
    return url[len("unix://"):] if url.startswith("unix://") else cfg.paths.supervisor_socket


def cmd_watchdog_run(args):
    from watchdog.run import Watchdog

    cfg = load_config(args)
    _log_to_stderr(args, "watchdog")
    runner = Watchdog(cfg, resolve_url(cfg), supervisor_socket(cfg))
    runner.install_signal_handlers()
    return runner.run()


def cmd_api_run(args):
    cfg = load_config(args)
    return _serve_api(args, cfg, cfg.bots.get(API_BOT))


def _serve_api(args, cfg, spec):
    from api.run import serve

    _log_to_stderr(args, "api")
    url = resolve_url(cfg)
    with connection(cfg) as conn:  # refuse to serve a schema this code does not know, before listening
        check_schema(conn)
        if spec is not None:  # as the fleet's program, the API can be disabled like any bot
            _refuse_if_disabled(conn, spec)
    serve(cfg, url, spec=spec, log_level=args.log_level)


def cmd_watchdog_forget(args):
    cfg = load_config(args)
    if args.host in cfg.hosts:
        raise BotfleetError(f"host {args.host} is listed under hosts: in {cfg.root / 'fleet.yaml'}: take it out "
                            f"there (and run `botfleet db upgrade`) before forgetting it")
    with connection(cfg) as conn:
        age_s = conn.execute(sql.WATCHDOG_AGE_OF_HOST, {"host": args.host}).fetchone()["age_s"]
        if age_s is None:
            raise BotfleetError(f"no watchdog has ever run on host {args.host}")
        if age_s <= cfg.watchdog.stale_after_s:
            raise BotfleetError(f"the watchdog on host {args.host} checked {age_s:.1f}s ago: stop it first")
        row = conn.execute(sql.FORGET_HOST, {"host": args.host}).fetchone()
        conn.commit()
    print(f"host {args.host} forgotten: {row['watchdogs']} watchdog row(s) removed, "
          f"{row['processes']} process registration(s) retired")


def cmd_check(args):
    from watchdog import health

    cfg, config_error = load_config_for_monitoring(args)
    # A monitoring probe must never start a database: only report that none runs.
    url = resolve_url(cfg, start=False)
    code, line = (health.check(url, cfg.watchdog) if url else
                  (health.CRITICAL, f"CRITICAL: database unavailable: no DATABASE_URL and the embedded "
                                    f"PostgreSQL ({cfg.paths.pgdata}) is not running"))
    code, line = with_config_problem(code, line, config_error, health.CRITICAL)
    print(line)
    return code


def cmd_zabbix_discovery(args):
    cfg, config_error = load_config_for_monitoring(args)
    bots = cfg.bots.values()
    if config_error is not None:  # the bots as the database knows them: discovery must not lose them now
        with connection(cfg) as conn:
            bots = [SimpleNamespace(**row) for row in conn.execute(sql.KNOWN_BOTS).fetchall()]
    data = [{"{#BOT}": s.name, "{#METASERVICE}": s.metaservice, "{#TICKET_TYPE}": s.ticket_type,
             "{#STATE}": str(s.state), "{#STATE_NAME}": s.state_name} for s in sorted(bots, key=lambda s: s.name)]
    print(json.dumps({"data": data}))


def cmd_supervisor_render(args):
    from common.fleet import render

    cfg = load_config(args)
    if args.check:
        problems = render.stale_files(cfg)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("supervisord config is stale: run `botfleet supervisor render`", file=sys.stderr)
            return 1
        print(f"{cfg.paths.supervisord_conf} and {cfg.paths.programs_dir} are up to date")
        return 0
    # Rendering for a fleet that cannot run would only move the failure to supervisord.
    check_handlers(cfg)
    for path in render.write(cfg):
        print(f"wrote {path}")
    return 0


def cmd_reload(args):
    from common.fleet import reload

    cfg = load_config(args)
    check_handlers(cfg)  # the same full check as `config check`: a running fleet is not touched for a broken one
    # The running fleet's database: never one started for the occasion.
    url = resolve_url(cfg, start=False)
    if url is None:
        raise BotfleetError(f"the embedded database ({cfg.paths.pgdata}) is not running: there is no running fleet "
                            f"to reload; `botfleet up` starts one")
    return reload.reload(cfg, url)


def cmd_supervisorctl(args):
    cfg = load_config(args)
    command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(cfg.paths.supervisord_conf), *args.args]
    os.execv(sys.executable, command)


def cmd_up(args):
    from common.fleet import lifecycle

    cfg = load_config(args)
    timeout = {} if args.ready_timeout is None else {"ready_timeout_s": args.ready_timeout}
    return lifecycle.up(cfg, daemon=args.daemon, readiness=lambda url: _ready_here(cfg, url), **timeout)


def _ready_here(cfg, url) -> tuple[int, str]:
    """`check`'s verdict on this host's bots: a host's start waits for its own, not for hosts not started yet."""
    from common.store.connect import connect
    from watchdog import health
    from watchdog.time_limits import PROBE_TIMEOUTS

    host = cfg.paths.host_name
    try:
        with connect(url, autocommit=True, timeouts=PROBE_TIMEOUTS) as conn:
            rows = [row for row in conn.execute(sql.HEALTH_CHECK).fetchall() if row["host"] == host]
    except psycopg.Error as exc:
        return health.CRITICAL, f"CRITICAL: database unavailable: {str(exc).strip().splitlines()[0]}"
    return health.judge(rows, cfg.watchdog.stale_after_s)


def cmd_down(args):
    from common.fleet import lifecycle

    return lifecycle.down(load_config(args), keep_database=args.keep_database)


def cmd_status(args):
    from common.fleet import status

    cfg, config_error = load_config_for_monitoring(args)
    with connection(cfg) as conn:
        report = status.collect(conn, cfg)
    report["config_error"] = None if config_error is None else str(config_error)
    if args.json:
        print_json(report)
    else:
        print(status.format_text(report))
    return 0 if config_error is None else config_error.exit_code


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botfleet", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="DIR",
                        help="config folder (default: $BOTFLEET_CONFIG, else ./config); runtime files go to "
                             "$BOTFLEET_VAR, else var/ beside the config folder")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(parent, name, func, help_text):
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    group = sub.add_parser("config", help="check the config folder").add_subparsers(dest="sub", required=True)
    p = command(group, "check", cmd_config_check, "validate every config file and import every handler")
    p.add_argument("--database", action="store_true",
                   help="also connect, and check that this host's fleet fits in the server's connections")

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
    p = command(group, "forget", cmd_watchdog_forget, "stop expecting a watchdog on a host taken out of the fleet")
    p.add_argument("host")
    group = sub.add_parser("api", help="the HTTP API").add_subparsers(dest="sub", required=True)
    p = command(group, "run", cmd_api_run, "serve the HTTP API on api.listen (supervisord does this)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    command(sub, "check", cmd_check, "exit 0 if the watchdog is alive and every enabled bot is healthy "
                                     "(for Zabbix and people); prints one line")
    group = sub.add_parser("zabbix", help="Zabbix helpers").add_subparsers(dest="sub", required=True)
    command(group, "discovery", cmd_zabbix_discovery, "low-level discovery JSON of the bots")

    group = sub.add_parser("supervisor", help="supervisord config").add_subparsers(dest="sub", required=True)
    p = command(group, "render", cmd_supervisor_render, "write supervisord.conf and supervisord.d/*.conf from config/")
    p.add_argument("--check", action="store_true", help="exit 1 if the rendered files are stale, write nothing")
    command(sub, "reload", cmd_reload, "bring the running fleet onto the config folder as it is now: check it, "
                                       "upgrade the database, render, and restart gracefully every process whose "
                                       "config changed (the API and the watchdog too)")
    p = command(sub, "supervisorctl", cmd_supervisorctl, "run supervisorctl on the fleet's supervisord")
    p.add_argument("args", nargs=argparse.REMAINDER, help="supervisorctl's command, e.g. status")

    p = command(sub, "up", cmd_up, "start the database if embedded, upgrade, render and run supervisord")
    p.add_argument("--daemon", action="store_true",
                   help="return once the fleet is ready: every bot registered and found healthy, as `check` says")
    p.add_argument("--ready-timeout", type=float, metavar="SECONDS",
                   help="how long to wait for the fleet to be ready (default 120); then --daemon exits 1, naming "
                        "what is missing, and leaves the fleet running")
    p = command(sub, "down", cmd_down, "stop supervisord and every bot (also those left by a supervisord that died), "
                                       "then the embedded database")
    p.add_argument("--keep-database", action="store_true", help="leave the embedded database running")

    p = command(sub, "status", cmd_status, "each bot's liveness and counts, and tickets per state")
    p.add_argument("--json", action="store_true")

    group = sub.add_parser("ticket", help="create, show, list and move tickets").add_subparsers(
        dest="sub", required=True)
    p = command(group, "create", tickets.cmd_ticket_create, "create a ticket and print its id")
    p.add_argument("metaservice")
    p.add_argument("type")
    p.add_argument("--payload", default="{}", help="a JSON object, @FILE to read it from a file, - from stdin")
    p.add_argument("--creator", default="cli", help="who the ticket is for: the user told when it times out")
    p.add_argument("--group", help="the group asked to accept it, instead of the type's group_role")
    p = command(group, "show", tickets.cmd_ticket_show, "a ticket with its event history")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = command(group, "list", tickets.cmd_ticket_list, "tickets, newest first")
    p.add_argument("--metaservice")
    p.add_argument("--type")
    p.add_argument("--state", type=int)
    p.add_argument("--open", action="store_true", help="only tickets not closed")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(group, "send", tickets.cmd_ticket_send, "move a ticket to its normal next state or --to STATE")
    p.add_argument("id", type=int)
    p.add_argument("--to", type=int)
    p.add_argument("--actor", default="cli")
    p = command(group, "close", tickets.cmd_ticket_close, "close a ticket where it stands, with a reason")
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True, help="why: recorded in the ticket's 'closed' event")
    p.add_argument("--actor", default="cli")
    p = command(group, "assign", tickets.cmd_ticket_assign, "assign a ticket to a member of its group")
    p.add_argument("id", type=int)
    p.add_argument("user")
    p.add_argument("--actor", default="cli")
    p = command(group, "accept", tickets.cmd_ticket_accept, "a member of the ticket's group accepts it")
    p.add_argument("id", type=int)
    p.add_argument("user")
    people.add_parsers(sub, command)
    types.add_parsers(sub, command)
    tokens.add_parsers(sub, command)
    lock.add_parsers(sub, command)
    status_models.add_parsers(sub, command)
    workers.add_parsers(sub, command)
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
    except BrokenPipeError:
        # The reader went away (`botfleet ticket list | head`): not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code or 0

