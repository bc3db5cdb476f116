"""The web console, served by the API under /console/: pages rendered on the server (Jinja2), parts of them
swapped by htmx, live counts over Server-Sent Events. Everything it runs is vendored in static/: nothing is
fetched at run time and nothing is built."""

import asyncio
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.console import fleet, tickets, types, work
from api.console.live import FLEET, LiveHub, type_topic
from api.console.render import HERE, STATIC_MAX_AGE_S, page
from api.console.session import (
    COOKIE,
    Refused,
    SignInNeeded,
    Viewer,
    console_path,
    cross_site_reason,
    sign_in_url,
    viewer,
    viewer_of,
)
from common import __version__

PREFIX = "/console"
router = APIRouter(prefix=PREFIX, include_in_schema=False)

STATIC = {
    "htmx-2.0.11.min.js": "htmx-2.0.11.min.js",
    "htmx-ext-sse-2.2.4.min.js": "htmx-ext-sse-2.2.4.min.js",
    f"console-{__version__}.css": "console.css",
    f"console-{__version__}.js": "console.js",
}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The cookie lives as long as a working day; the token behind it is checked on every request anyway.
COOKIE_MAX_AGE_S = 12 * 3600


@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC:
        return Response(status_code=404)
    path = HERE / "static" / STATIC[name]
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix],
                        headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}, immutable"})


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: only a path of this console, never another site."""
    home = console_path(request, "/")
    if not target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(console_path(request, "/")):
        return home
    return target


@router.get("/signin")
async def sign_in_form(request: Request, next: str | None = None):
    return page(request, "signin.html", None, next=_safe_next(request, next), error=None)


@router.post("/signin")
async def sign_in(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = ""):
    reason = cross_site_reason(request)
    if reason is not None:
        return page(request, "refused.html", None, status_code=403, why=reason)
    who = await viewer_of(request, token.strip())
    if who is None:
        return page(request, "signin.html", None, status_code=401, next=_safe_next(request, next),
                    error="That token is unknown or revoked.")
    response = RedirectResponse(_safe_next(request, next), status_code=303)
    response.set_cookie(COOKIE, token.strip(), max_age=COOKIE_MAX_AGE_S, path=console_path(request, "/"),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/signout")
async def sign_out(request: Request):
    response = RedirectResponse(console_path(request, "/signin"), status_code=303)
    response.delete_cookie(COOKIE, path=console_path(request, "/"), httponly=True, samesite="strict")
    return response


async def _stream(request: Request, topic: str, event: str):
    """Each new rendering of `topic` as an SSE event, until the page goes, the token is revoked, or the server
    stops."""
    hub: LiveHub = request.app.state.live
    queue = hub.subscribe(topic)
    closing = asyncio.ensure_future(hub.closing.wait())
    try:
        while not closing.done():
            getting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getting, closing}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                break
            if await viewer_of(request, request.cookies.get(COOKIE)) is None:
                break  # signed out or revoked: the next page load asks to sign in
            yield ServerSentEvent(raw_data=getting.result(), event=event)
    finally:
        closing.cancel()
        hub.unsubscribe(topic, queue)


@router.get("/live/types/{metaservice}/{name}", response_class=EventSourceResponse)
async def live_type(metaservice: str, name: str, request: Request, who: Annotated[Viewer, Depends(viewer)]):
    types.find_type(request.app.state.config, metaservice, name)
    async for event in _stream(request, type_topic(metaservice, name), "graph"):
        yield event


@router.get("/live/fleet", response_class=EventSourceResponse)
async def live_fleet(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    async for event in _stream(request, FLEET, "fleet"):
        yield event


router.include_router(fleet.router)
router.include_router(types.router)
router.include_router(tickets.router)
router.include_router(work.router)


def _refused(request: Request, exc: Refused):
    """A refusal shown where the person acted: in the page's flash area for htmx, as a page otherwise."""
    who = getattr(request.state, "console_viewer", None)
    headers = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"} if request.headers.get("hx-request") else None
    return page(request, "refused.html", who, status_code=exc.status_code, headers=headers, why=exc.why)


def _sign_in(request: Request, exc: SignInNeeded):
    if request.headers.get("hx-request"):  # htmx follows this header with a full page load
        return Response(status_code=401, headers={"HX-Redirect": sign_in_url(request)})
    if request.method != "GET":
        return page(request, "refused.html", None, status_code=401, why="sign in first")
    return RedirectResponse(sign_in_url(request), status_code=303)


def install(app: FastAPI) -> None:
    """The console's routes and error pages on `app`; its live hub starts and stops with the app (start_live)."""
    app.include_router(router)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(SignInNeeded, _sign_in)
    app.state.graphs = types.Graphs(app.state.config)


def start_live(app: FastAPI, url: str, timeouts) -> LiveHub:
    hub = LiveHub(app.state.config, url, timeouts,
                  {"type": types.render_topics, "fleet": fleet.render_topics})
    hub.pool, hub.graphs = app.state.pool, app.state.graphs
    hub.start()
    app.state.live = hub
    return hub
