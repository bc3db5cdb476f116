"""Pages rendered on the server with Jinja2: the templates beside this module, and what every page needs."""

from datetime import UTC, datetime
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from api.console.session import Viewer, console_path
from common import __version__
from common.config.durations import format_duration

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# Static files are named by their version, so a browser may keep them for good.
STATIC_MAX_AGE_S = 365 * 86400


def when(value) -> Markup:
    """A time for people: written in UTC here, shown in the browser's time zone by console.js, UTC on hover."""
    if value is None:
        return Markup("&ndash;")
    if not isinstance(value, datetime):
        return escape(value)
    utc = value.astimezone(UTC)  # the database answers in its session's time zone, whatever that is
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(
        utc.isoformat(timespec="seconds"), utc.strftime("%Y-%m-%d %H:%M:%S UTC"))


def seconds(value) -> str:
    return "–" if value is None else format_duration(value)


templates.env.filters["when"] = when
templates.env.filters["seconds"] = seconds
templates.env.globals["version"] = __version__


def is_partial(request: Request) -> bool:
    """A request made by htmx for a part of a page (not a boosted link, which wants the whole page)."""
    return request.headers.get("hx-request") == "true" and not request.headers.get("hx-boosted")


def page(request: Request, name: str, who: Viewer | None, status_code: int = 200, headers=None, **context):
    """A template rendered for `who`; a request made by htmx for a part of a page gets that part only when the
    template says which (`partial`), so one template serves both."""
    return templates.TemplateResponse(request, name, {
        "root": console_path(request), "who": who, "config": request.app.state.config,
        "partial": is_partial(request),
        **context}, status_code=status_code, headers=headers)
