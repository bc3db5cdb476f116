"""`botfleet token create|list|revoke`: bearer tokens of the HTTP API."""

from common.access.tokens import SCOPES, create_token, list_tokens, revoke_token
from common.cli.shared import connection, load_config, print_json


def cmd_token_create(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        token = create_token(conn, args.name, args.scopes, args.user)
    print(token)


def cmd_token_list(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        rows = list_tokens(conn)
    if args.json:
        print_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "live"
        user = f"as {row['user_name']}" if row["user_name"] else "-"
        print(f"{row['name']:<24} {','.join(row['scopes']):<28} {user:<16} created {row['created_at']:%Y-%m-%d %H:%M}  {state}")


def cmd_token_revoke(args):
    cfg = load_config(args)
    with connection(cfg) as conn:
        revoke_token(conn, args.name)
    print(f"token {args.name} revoked")


def add_parsers(sub, command):
    group = sub.add_parser("token", help="bearer tokens of the HTTP API").add_subparsers(dest="sub", required=True)
    p = command(group, "create", cmd_token_create, "make a token and print it, once: only its hash is kept")
    p.add_argument("--name", required=True, help="who or what uses it; unique")
    p.add_argument("--scopes", required=True, help=f"comma-separated, of: {','.join(SCOPES)}")
    p.add_argument("--user", help="the user it acts as: it creates tickets as them and accepts only as them "
                                  "(acting for another user needs the admin scope)")
    p = command(group, "list", cmd_token_list, "tokens with their scopes, live or revoked")
    p.add_argument("--json", action="store_true")
    p = command(group, "revoke", cmd_token_revoke, "revoke a token at once")
    p.add_argument("name")
