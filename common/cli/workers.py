"""`botfleet worker list`: the external workers (seed 002) known by name, their last contact, and what
each holds."""

from common.cli.shared import connection, load_config, print_json
from common.tickets.workers import list_workers


def cmd_worker_list(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        rows = list_workers(conn)
    if args.json:
        print_json(rows)
        return
    if not rows:
        print("no worker has asked for work yet")
    for row in rows:
        held = (f"holds {row['metaservice']}/{row['ticket_type']} ticket {row['ticket_id']} (state {row['state']}) "
                f"until {row['stalls_at']:%Y-%m-%d %H:%M:%S}" if row["ticket_id"] else "holds nothing")
        print(f"{row['name']:<24} last contact {row['last_contact_at']:%Y-%m-%d %H:%M:%S}   {held}")


def add_parsers(sub, command):
    group = sub.add_parser("worker", help="external workers that pull their work (seed 002)").add_subparsers(
        dest="sub", required=True)
    p = command(group, "list", cmd_worker_list, "every worker known by name, its last contact and what it holds")
    p.add_argument("--json", action="store_true")
