"""Bearer tokens of the HTTP API: made once and shown once; only a hash is kept, with the token's scopes."""

import hashlib
import secrets

from common.errors import BotfleetError
from common.store import sql

# read: every GET; submit: create tickets and jobs; update: change, accept and close them;
# admin: the lock, people, type settings and tokens.
SCOPES = ("read", "submit", "update", "admin", "work")  # work: a pulling worker's (seed 002)
TOKEN_PREFIX = "bf_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text) -> list[str]:
    """"read,submit" as a list of scopes; an unknown or missing one is refused, by name."""
    scopes = [s.strip() for s in (text or "").split(",") if s.strip()] if isinstance(text, str) else list(text or ())
    if not scopes:
        raise BotfleetError(f"a token needs at least one scope of: {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise BotfleetError(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def create_token(conn, name: str, scopes, user: str | None = None) -> str:
    """Make a token named `name` with `scopes`, acting as `user` if given (who must exist); returns the token,
    which is not stored and cannot be shown again."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise BotfleetError(f"a token needs a name without surrounding spaces, got {name!r}")
    scopes = parse_scopes(scopes)
    if user is not None and conn.execute(sql.UNKNOWN_USERS, {"users": [user]}).fetchone() is not None:
        raise BotfleetError(f"no user named {user!r}: add it with `botfleet user add {user}`")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    params = {"name": name, "token_hash": token_hash(token), "scopes": scopes, "user": user}
    if conn.execute(sql.ADD_TOKEN, params).fetchone() is None:
        raise BotfleetError(f"a token named {name!r} exists already (revoked ones keep their name)")
    return token


def list_tokens(conn) -> list[dict]:
    return [dict(row) for row in conn.execute(sql.LIST_TOKENS).fetchall()]


def revoke_token(conn, name: str) -> None:
    if conn.execute(sql.REVOKE_TOKEN, {"name": name}).fetchone() is None:
        raise BotfleetError(f"there is no token named {name!r}")


def token_owner(conn, token: str):
    """(name, scopes, user) of a live token (user None: bound to nobody), or None for an unknown or revoked one."""
    row = conn.execute(sql.TOKEN_SCOPES, {"token_hash": token_hash(token)}).fetchone()
    return (row["name"], frozenset(row["scopes"]), row["user_name"]) if row else None
