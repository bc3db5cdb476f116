"""`botfleet type show|set`: a ticket type's lifetime and notification frequency, overridden at run time."""

from common.cli.shared import connection, load_config, print_json
from common.config.durations import format_duration
from common.errors import BotfleetError
from common.tickets.settings import UNSET, set_type_settings, type_settings


def _key(text):
    metaservice, _, name = (text or "").partition("/")
    if not metaservice or not name:
        raise BotfleetError(f"a ticket type is written metaservice/type, got {text!r}")
    return metaservice, name


def _line(row) -> str:
    def value(name):
        override = row[f"{name}_override_s"]
        in_force = format_duration(row[f"effective_{name}_s"])
        return in_force + (f" (overridden; YAML {format_duration(row[f'{name}_s'])})" if override else "")
    return (f"{row['metaservice'] + '/' + row['name']:<32} lifetime {value('lifetime'):<34} "
            f"notification_frequency {value('notification_frequency')}")


def cmd_type_show(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        rows = type_settings(conn, cfg, _key(args.type) if args.type else None)
    if args.json:
        print_json(rows)
        return
    for row in rows:
        print(_line(row))


def cmd_type_set(args):
    cfg = load_config(args)
    if not (args.reset or args.lifetime or args.notification_frequency):
        raise BotfleetError("say what to set: --lifetime, --notification-frequency, or --reset")
    changes = ({"lifetime": None, "notification_frequency": None} if args.reset else
               {"lifetime": args.lifetime or UNSET, "notification_frequency": args.notification_frequency or UNSET})
    with connection(cfg) as conn:
        row = set_type_settings(conn, cfg, _key(args.type), **changes)
    print(_line(row))


def add_parsers(sub, command):
    group = sub.add_parser("type", help="a ticket type's run-time settings").add_subparsers(dest="sub", required=True)
    p = command(group, "show", cmd_type_show, "lifetime and notification frequency in force, and their YAML values")
    p.add_argument("type", nargs="?", help="metaservice/type (default: every type)")
    p.add_argument("--json", action="store_true")
    p = command(group, "set", cmd_type_set, "override the lifetime or notification frequency of a type")
    p.add_argument("type", help="metaservice/type")
    p.add_argument("--lifetime", metavar="DURATION", help="e.g. 2h; applies to open tickets too")
    p.add_argument("--notification-frequency", metavar="DURATION", help="e.g. 15m; from each ticket's next round")
    p.add_argument("--reset", action="store_true", help="back to the YAML values")
