"""`botfleet lock` and `botfleet unlock`: the fleet's lock, for exclusive work by hand (seed 000)."""

import getpass

from common.access.fleet_lock import lock_fleet, read_lock, unlock_fleet
from common.cli.shared import connection, load_config, print_json


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _show(lock, as_json):
    if as_json:
        print_json(lock.__dict__)
    else:
        print(f"fleet: {lock.describe()}")


def cmd_lock(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        lock = lock_fleet(conn, args.reason, _actor()) if args.reason is not None else read_lock(conn)
    _show(lock, args.json)


def cmd_unlock(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        lock = unlock_fleet(conn, _actor())
    _show(lock, args.json)


def add_parsers(sub, command):
    p = command(sub, "lock", cmd_lock, "lock the fleet for operations (ops_only): the API creates nothing and bots "
                                      "of types without runs_when_locked claim nothing; without --reason, show the lock")
    p.add_argument("--reason", help="why, shown to whoever finds the fleet locked (the API's 503 answers)")
    p.add_argument("--json", action="store_true")
    p = command(sub, "unlock", cmd_unlock, "open the fleet again (after a running exclusive ticket, if one runs)")
    p.add_argument("--json", action="store_true")
