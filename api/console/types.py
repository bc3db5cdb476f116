"""A ticket type: its state graph with live counts on every state, its bots' health, and its run-time
settings (seed 003's administration panel), which an admin may change here."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request

from api.console import graph
from api.console.live import type_topic
from api.console.render import page
from api.console.session import NotFound, Refused, Viewer, allowed, console_path, viewer
from common.errors import BotfleetError
from common.store import sql
from common.tickets.settings import set_type_settings

router = APIRouter()


def shown_types(config) -> list:
    """The types people work with: the config's, in the order of their metaservice and name."""
    return sorted(config.types.values(), key=lambda t: t.key)


def find_type(config, metaservice: str, name: str):
    found = config.types.get((metaservice, name))
    if found is None:
        raise NotFound(f"there is no ticket type {metaservice}/{name}")
    return found


class Graphs:
    """The layout of each type's graph, computed once; each render only writes the numbers in."""

    def __init__(self, config):
        self.config = config
        self._layouts: dict = {}

    def layout(self, ticket_type):
        if ticket_type.key not in self._layouts:
            self._layouts[ticket_type.key] = graph.layout_graph(ticket_type)
        return self._layouts[ticket_type.key]

    def svg(self, ticket_type, counts: dict, health: dict) -> str:
        base = f"{self.config.api_root_path}/console/tickets?"

        def href(code):
            return base + urlencode({"metaservice": ticket_type.metaservice, "type": ticket_type.name,
                                     "state": code, "status": "open"})
        return graph.render_svg(self.layout(ticket_type), ticket_type, counts, health, href)


def _keys(types) -> dict:
    return {"metaservices": [t.metaservice for t in types], "ticket_types": [t.name for t in types]}


async def read_counts(conn, types) -> dict:
    """{type key: {code: StateCounts}} for `types`, one statement for all."""
    counts: dict = {t.key: {} for t in types}
    cursor = await conn.execute(sql.CONSOLE_STATE_COUNTS, _keys(types))
    for row in await cursor.fetchall():
        counts[(row["metaservice"], row["ticket_type"])][row["state"]] = graph.StateCounts(
            open=row["open"], due=row["due"], held=row["held"], waiting=row["waiting"], parked=row["parked"])
    return counts


async def read_health(conn, config, types) -> dict:
    """{type key: {code: its bot's health}} for `types`, one statement for all."""
    health: dict = {t.key: {} for t in types}
    cursor = await conn.execute(sql.CONSOLE_STATE_HEALTH, {**_keys(types),
                                                          "stale_after_s": config.watchdog.stale_after_s})
    for row in await cursor.fetchall():
        health[(row["metaservice"], row["ticket_type"])][row["state"]] = (
            row["health"] if row["enabled"] else "disabled")
    return health


async def read_graphs(conn, config, types) -> tuple[dict, dict]:
    """(counts, health) of `types`, as a graph shows them."""
    return await read_counts(conn, types), await read_health(conn, config, types)


async def render_topics(hub, topics) -> dict:
    """The live renderer of type topics: every watched type's graph, read once for all its pages."""
    config = hub.config
    wanted = {type_topic(*t.key): t for t in config.types.values()}
    types = [wanted[topic] for topic in topics if topic in wanted]
    if not types:
        return {}
    counts, health = await read_graphs(hub.conn, config, types)
    graphs = hub.graphs
    return {type_topic(*t.key): graphs.svg(t, counts[t.key], health[t.key]) for t in types}


@router.get("/types")
async def types_page(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    config = request.app.state.config
    types = shown_types(config)
    async with request.app.state.aio_pool.connection() as conn:
        counts = await read_counts(conn, types)
    totals = {t.key: sum(c.open for c in counts[t.key].values()) for t in types}
    return page(request, "types.html", who, nav="types", types=types, totals=totals)


@router.get("/types/{metaservice}/{name}")
async def type_page(metaservice: str, name: str, request: Request, who: Annotated[Viewer, Depends(viewer)]):
    config = request.app.state.config
    kind = find_type(config, metaservice, name)
    async with request.app.state.aio_pool.connection() as conn:
        counts, health = await read_graphs(conn, config, [kind])
        cursor = await conn.execute(sql.TYPE_SETTINGS, {"metaservice": metaservice, "ticket_type": name})
        settings = await cursor.fetchone()
    return page(request, "type.html", who, nav="types", kind=kind, settings=settings,
                svg=request.app.state.graphs.svg(kind, counts[kind.key], health[kind.key]),
                counts=counts[kind.key], health=health[kind.key],
                bots={spec.state: spec for spec in config.bots.values() if (spec.metaservice, spec.ticket_type) == kind.key},
                live_url=console_path(request, f"/live/types/{metaservice}/{name}"))


@router.post("/types/{metaservice}/{name}/settings")
def save_settings(metaservice: str, name: str, request: Request, who: Annotated[Viewer, Depends(viewer)],
                  lifetime: Annotated[str, Form()] = "", notification_frequency: Annotated[str, Form()] = ""):
    """An admin overrides the lifetime and the notification frequency; an empty field goes back to the YAML
    value. Running bots take it up without a restart, as with `botfleet type set`."""
    allowed(request, who, "admin")
    config = request.app.state.config
    kind = find_type(config, metaservice, name)
    changes = {"lifetime": lifetime.strip() or None, "notification_frequency": notification_frequency.strip() or None}
    try:
        with request.app.state.pool.connection() as conn:
            settings = set_type_settings(conn, config, kind.key, **changes)
    except BotfleetError as exc:
        raise Refused(str(exc), status_code=422) from None
    return page(request, "type_settings.html", who, kind=kind, saved=True, settings=settings)
