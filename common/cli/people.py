"""`botfleet user ...` and `botfleet group ...`: the people tickets go to."""

from common.cli.shared import connection, load_config, print_json
from common.notifications import outbox
from common.people import directory


def _window(row) -> str:
    if row["window_start"] is None:
        return "any time"
    return f"{row['window_start']:%H:%M}-{row['window_end']:%H:%M} {row['tz']}"


def cmd_user_add(args):
    with connection(load_config(args)) as conn:
        directory.add_user(conn, args.name, email=args.email, window=args.window, tz=args.tz)
        conn.commit()
    print(f"user {args.name} saved")


def cmd_user_remove(args):
    with connection(load_config(args)) as conn:
        directory.remove_user(conn, args.name)
        conn.commit()
    print(f"user {args.name} removed")


def cmd_user_list(args):
    with connection(load_config(args)) as conn:
        users = directory.list_users(conn)
    if args.json:
        print_json([{**u, "window_start": u["window_start"] and f"{u['window_start']:%H:%M}",
                     "window_end": u["window_end"] and f"{u['window_end']:%H:%M}"} for u in users])
        return
    for user in users:
        print(f"{user['name']:<24} {user['email'] or '-':<32} {_window(user):<28} {', '.join(user['groups']) or '-'}")


def cmd_group_add(args):
    with connection(load_config(args)) as conn:
        directory.add_group(conn, args.name, args.member or ())
        conn.commit()
    print(f"group {args.name} saved" + (f" with {', '.join(args.member)}" if args.member else ""))


def cmd_group_remove(args):
    with connection(load_config(args)) as conn:
        directory.remove_group(conn, args.name, args.member)
        conn.commit()
    print(f"removed {', '.join(args.member)} from group {args.name}" if args.member else f"group {args.name} removed")


def cmd_group_list(args):
    with connection(load_config(args)) as conn:
        groups = directory.list_groups(conn)
    if args.json:
        print_json(groups)
        return
    for group in groups:
        print(f"{group['name']:<24} {', '.join(group['members']) or '(no members)'}")


def cmd_inbox(args):
    config = load_config(args)
    with connection(config) as conn:
        items = outbox.inbox(conn, args.user, include_read=args.all, limit=args.limit)
        if args.mark_read:
            outbox.mark_read(conn, args.user, [item["id"] for item in items])
            conn.commit()
    if args.json:
        print_json(items)
        return
    for item in reversed(items):
        # Without a mail: section nothing mails: a notification left pending from a time the fleet did is
        # not waiting for anything.
        pending = " (mail pending)" if config.mail is not None else ""
        mail = {"none": "", "pending": pending, "sent": " (mailed)"}.get(item["email_state"])
        if mail is None:  # dropped or merged (the note says why), undeliverable
            mail = (f" ({item['email_note']})" if item["email_note"]
                    else f" (mail {item['email_state']} after {item['email_attempts']} tries)")
        print(f"{item['at']:%Y-%m-%d %H:%M}  {'  ' if item['read'] else '* '}#{item['id']} {item['kind']:<10} "
              f"ticket {item['ticket_id']}: {item['text']}{mail}")


def add_parsers(sub, command):
    p = command(sub, "inbox", cmd_inbox, "a user's notifications, newest last (unread ones unless --all)")
    p.add_argument("user")
    p.add_argument("--all", action="store_true", help="read ones too")
    p.add_argument("--mark-read", action="store_true", help="mark the ones shown as read")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")

    group = sub.add_parser("user", help="the people tickets go to").add_subparsers(dest="sub", required=True)
    p = command(group, "add", cmd_user_add, "add a user, or change one")
    p.add_argument("name")
    p.add_argument("--email", help="where their notifications are mailed")
    p.add_argument("--window", metavar="HH:MM-HH:MM", help="deliver email only in these hours (default: any time)")
    p.add_argument("--tz", default="UTC", help="the time zone of --window, e.g. Europe/Berlin (default UTC)")
    p = command(group, "remove", cmd_user_remove, "remove a user (and their group memberships)")
    p.add_argument("name")
    p = command(group, "list", cmd_user_list, "users with their email, window and groups")
    p.add_argument("--json", action="store_true")

    group = sub.add_parser("group", help="groups of users: a ticket type's group_role").add_subparsers(
        dest="sub", required=True)
    p = command(group, "add", cmd_group_add, "add a group if missing, and members to it")
    p.add_argument("name")
    p.add_argument("--member", action="append", metavar="USER", help="a user to add (repeat for several)")
    p = command(group, "remove", cmd_group_remove, "remove members from a group, or the group itself")
    p.add_argument("name")
    p.add_argument("--member", action="append", metavar="USER", help="remove only this member (repeatable)")
    p = command(group, "list", cmd_group_list, "groups with their members")
    p.add_argument("--json", action="store_true")
