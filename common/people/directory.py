"""Users and groups in the database: add, remove and list them, and check who may hold a ticket."""

from common.config.people import EMAIL, PERSON_NAME, parse_window
from common.errors import BotfleetError
from common.store import sql


def _name(value, what) -> str:
    if not isinstance(value, str) or not PERSON_NAME.match(value):
        raise BotfleetError(f"{what} name {value!r} must start with a letter or digit and use only letters, "
                            f"digits, '.', '_', '@' and '-'")
    return value


def add_user(conn, name, *, email=None, window=None, tz="UTC"):
    """Create a user, or change one: a name, an email address, a delivery window in a time zone."""
    _name(name, "user")
    if email is not None and not EMAIL.match(email):
        raise BotfleetError(f"email address {email!r} of user {name} is not an address")
    try:
        start, end = parse_window(window) or (None, None)
    except ValueError as exc:
        raise BotfleetError(str(exc)) from None
    if not conn.execute(sql.KNOWN_TIME_ZONE, {"tz": tz}).fetchone()["known"]:
        raise BotfleetError(f"time zone {tz!r} of user {name} is unknown (use a name like Europe/Berlin or UTC)")
    conn.execute(sql.UPSERT_USER, {"name": name, "email": email, "window_start": start, "window_end": end, "tz": tz})


def remove_user(conn, name):
    if conn.execute(sql.DELETE_USER, {"name": name}).fetchone() is None:
        raise BotfleetError(f"no user named {name!r}")


def list_users(conn) -> list[dict]:
    return conn.execute(sql.LIST_USERS).fetchall()


def unknown_users(conn, users) -> list[str]:
    """Of `users`, the names that are not users, sorted."""
    users = sorted(set(users))
    if not users:
        return []
    return [r["name"] for r in conn.execute(sql.UNKNOWN_USERS, {"users": users}).fetchall()]


def add_group(conn, name, members=()):
    """Create a group if it does not exist, and add members (each must be a user)."""
    _name(name, "group")
    unknown = unknown_users(conn, members)
    if unknown:
        raise BotfleetError(f"no user named {', '.join(unknown)}: add them with `botfleet user add` first")
    with conn.transaction():
        conn.execute(sql.ADD_GROUP, {"name": name})
        conn.execute(sql.ADD_MEMBERS, {"group": name, "users": list(members)})


def remove_group(conn, name, members=None):
    """Remove members from a group, or (no members given) the group itself."""
    if not conn.execute(sql.GROUP_EXISTS, {"name": name}).fetchone()["found"]:
        raise BotfleetError(f"no group named {name!r}")
    if members:
        conn.execute(sql.REMOVE_MEMBERS, {"group": name, "users": list(members)})
    else:
        conn.execute(sql.DELETE_GROUP, {"name": name})


def list_groups(conn) -> list[dict]:
    return conn.execute(sql.LIST_GROUPS).fetchall()


def require_group(conn, name):
    if not conn.execute(sql.GROUP_EXISTS, {"name": name}).fetchone()["found"]:
        raise BotfleetError(f"no group named {name!r}: add it with `botfleet group add {name}`")


def refused_assignees(conn, pairs) -> dict:
    """ticket id -> why its user may not hold it, for (ticket id, user) pairs (users None are unassignments)."""
    pairs = [(ticket_id, user) for ticket_id, user in pairs if user is not None]
    if not pairs:
        return {}
    rows = conn.execute(sql.REFUSED_ASSIGNEES, {"ticket_ids": [p[0] for p in pairs],
                                                "users": [p[1] for p in pairs]}).fetchall()
    return {r["ticket_id"]: (f"no user named {r['user_name']!r}" if not r["is_user"] else
                             f"user {r['user_name']} is not a member of group {r['group_role']} of ticket {r['ticket_id']}")
            for r in rows}
