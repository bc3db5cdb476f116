"""Who is looking: the console signs in with an API token, kept in a cookie the page's scripts cannot read
(HttpOnly) and the browser sends only to requests from the console's own pages (SameSite=Strict). Every
change is a POST that must come from the console itself and needs the scope the API's route would."""

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request

COOKIE = "botfleet_console"
# A browser tells where a request comes from; "none" is a request the person made (a bookmark, the address bar).
SAME_SITE = {"same-origin", "none"}


@dataclass(frozen=True)
class Viewer:
    token_name: str
    scopes: tuple
    user: str | None

    def can(self, scope: str) -> bool:
        return scope in self.scopes


class SignInNeeded(Exception):
    """No live token in the cookie: a page goes to the sign-in form, a partial tells htmx to."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class Refused(Exception):
    """A change refused (403), or a mistake in what was asked (4xx), with the reason shown to the person."""

    def __init__(self, why: str, status_code: int = 403):
        super().__init__(why)
        self.why, self.status_code = why, status_code


class NotFound(Refused):
    def __init__(self, why: str):
        super().__init__(why, status_code=404)


def console_path(request: Request, path: str = "") -> str:
    """A console URL as the browser must ask for it: behind a reverse proxy, under its root path."""
    return f"{request.scope.get('root_path', '')}/console{path}"


async def viewer_of(request: Request, token: str | None) -> Viewer | None:
    if not token:
        return None
    owner = await request.app.state.tokens.owner(token)
    if owner is None:
        return None
    name, scopes, user = owner
    return Viewer(name, tuple(scopes), user)


async def viewer(request: Request) -> Viewer:
    """A dependency of every console route: the signed-in viewer, or SignInNeeded."""
    found = await viewer_of(request, request.cookies.get(COOKIE))
    if found is None:
        raise SignInNeeded("the token was revoked" if request.cookies.get(COOKIE) else "")
    request.state.console_viewer = found  # for the error pages, which show who is signed in
    return found


def sign_in_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return console_path(request, f"/signin?next={quote(here, safe='')}")


def cross_site_reason(request: Request) -> str | None:
    """Why a change does not come from the console's own page, or None. Browsers send Sec-Fetch-Site; an older
    one sends Origin at least, which must be this host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return None if site in SAME_SITE else f"a {site} request may not change anything here"
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        return f"a request from {origin} may not change anything here"
    return None


def allowed(request: Request, who: Viewer, scope: str) -> None:
    """A change by `who`: refused when it comes from another site, or without the scope the API would need."""
    reason = cross_site_reason(request)
    if reason is not None:
        raise Refused(reason)
    if not who.can(scope):
        raise Refused(f"token {who.token_name!r} does not have the scope {scope!r} "
                      f"(it has: {', '.join(who.scopes)})")


def actor(who: Viewer) -> str:
    """Who a change is recorded as in the ticket's history: the person the token is bound to, else the token."""
    return f"console:{who.user or who.token_name}"
