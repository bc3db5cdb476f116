"""Bearer tokens and scopes: 401 without a live token, 403 without the scope the route needs."""

import asyncio
import threading
import time

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from common.access.tokens import token_owner

# How long a token's scopes are trusted without asking the database again: a revocation takes effect
# within this, and a busy client costs one lookup per period instead of one per request.
TOKEN_CACHE_S = 5.0

_bearer = HTTPBearer(auto_error=False, description="a token from `botfleet token create`")


class TokenCache:
    def __init__(self, pool, ttl_s: float = TOKEN_CACHE_S):
        self.pool, self.ttl_s = pool, ttl_s
        self._known: dict[str, tuple] = {}
        self._lock = threading.Lock()

    async def owner(self, token: str):
        """(name, scopes, user) of a live token, or None. A token seen lately answers on the event loop; only a
        lookup in the database goes to a worker thread."""
        cached = self._known.get(token)  # by the token itself: the process holds it anyway, while it answers
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return await asyncio.to_thread(self._look_up, token)

    def _look_up(self, token: str):
        now = time.monotonic()
        with self.pool.connection() as conn:
            owner = token_owner(conn, token)
        with self._lock:
            if len(self._known) > 10_000:  # a flood of made-up tokens must not grow this without end
                self._known.clear()
            self._known[token] = (owner, now + self.ttl_s)
        return owner


def require(scope: str):
    """A dependency: the name of the request's token, which must be live and grant `scope`. The token's
    (name, scopes, user) is kept as request.state.caller, for acting_user()."""
    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        if credentials is None:
            raise ApiError(401, "unauthorized", "a bearer token is needed: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        owner = await request.app.state.tokens.owner(credentials.credentials)
        if owner is None:
            raise ApiError(401, "unauthorized", "the bearer token is unknown or revoked",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        name, scopes, _ = request.state.caller = owner
        if scope not in scopes:
            raise ApiError(403, "forbidden", f"token {name!r} does not have the scope {scope!r} "
                                             f"(it has: {', '.join(sorted(scopes))})")
        return name
    return check


def acting_user(request: Request, named: str | None, field: str) -> str | None:
    """The user a request acts as, when its body names `named` (None: names nobody): a token bound to a user
    acts as that user; acting for anybody else, or naming a user with a token bound to none, needs the admin
    scope: the token is trusted, not the body."""
    name, scopes, user = request.state.caller
    if named is None or named == user or "admin" in scopes:
        return named or user
    if user is None:
        raise ApiError(403, "forbidden", f"token {name!r} is bound to no user, so it may not act as {named!r} "
                                         f"({field}): that needs the admin scope, or a token made with --user", field)
    raise ApiError(403, "forbidden", f"token {name!r} acts as user {user!r} and may not act as {named!r} ({field}): "
                                     "acting for someone else needs the admin scope", field)
