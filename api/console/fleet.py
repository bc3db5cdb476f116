"""The fleet: every bot on every host (its supervisord state where this host runs it, each host's verdict,
heartbeat age, restarts by reason, work over the last minutes), each host's watchdog, `botfleet check`'s
verdict, and the fleet's lock, which an admin may set and open here."""

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from api.console.render import page, templates
from api.console.session import Refused, Viewer, actor, allowed, viewer
from api.console.sparkline import sparkline_svg
from common.access.fleet_lock import lock_fleet, read_lock, unlock_fleet
from common.config.names import hostname, process_names
from common.errors import BotfleetError
from common.fleet import supervisor
from common.fleet.stats_history import HISTORY_MINUTES, bot_history, minute_slots
from common.fleet.status import worst_state
from common.fleet.verdict import OK, judge
from common.store import sql

router = APIRouter()


@dataclass
class BotRow:
    name: str
    metaservice: str
    ticket_type: str
    state: int
    state_name: str
    enabled: bool
    restarts: dict  # reason -> count, the fleet's
    hosts: list = field(default_factory=list)  # one dict per host that runs it


# The history moves once a minute (the watchdogs' snapshots): drawn again at most this often, whatever the pages.
SPARKS_TTL_S = 30.0


class Sparks:
    """Each bot's sparklines of tickets done per minute and hop p50, drawn once per SPARKS_TTL_S per process."""

    def __init__(self):
        self._drawn: dict = {}
        self._until_mono = 0.0
        self._lock = threading.Lock()

    def get(self, conn) -> dict:
        with self._lock:
            if time.monotonic() >= self._until_mono:
                self._drawn = self._draw(bot_history(conn))
                self._until_mono = time.monotonic() + SPARKS_TTL_S
            return self._drawn

    @staticmethod
    def _draw(history: dict) -> dict:
        ends = [p.at for points in history.values() for p in points]
        if not ends:
            return {}
        until = max(ends)
        drawn = {}
        for bot, points in history.items():
            slots = minute_slots(points, until, HISTORY_MINUTES)
            done = [None if p is None else p.done for p in slots]
            hops = [None if p is None or p.hop_p50_s is None else p.hop_p50_s * 1000 for p in slots]
            last_hop = next((h for h in reversed(hops) if h is not None), None)
            drawn[bot] = {
                "done": sparkline_svg(done, title=f"{bot}: tickets done per minute, last {HISTORY_MINUTES} min "
                                                  f"(now {done[-1] or 0:g})"),
                "hop": sparkline_svg(hops, title=f"{bot}: hop p50 in ms per minute" + (
                    f" (last {last_hop:.1f} ms)" if last_hop is not None else "")),
                "last_hop_ms": last_hop}
        return drawn


SPARKS = Sparks()


def fleet_view(pool, config) -> dict:
    """Everything the fleet page shows, read on one connection of `pool` (and this host's supervisord)."""
    states = supervisor.process_states(config.paths.supervisor_socket)
    here = hostname()
    with pool.connection() as conn:
        rows = conn.execute(sql.CONSOLE_FLEET_BOTS).fetchall()
        watchdogs = conn.execute(sql.CONSOLE_WATCHDOGS).fetchall()
        code, line = judge(conn.execute(sql.HEALTH_CHECK).fetchall(), config.watchdog.stale_after_s)
        lock = read_lock(conn)
        sparks = SPARKS.get(conn)
    bots: dict[str, BotRow] = {}
    for row in rows:
        bot = bots.get(row["name"])
        if bot is None:
            bot = bots[row["name"]] = BotRow(row["name"], row["metaservice"], row["ticket_type"], row["state"],
                                             row["state_name"], row["enabled"], row["restarts"])
        supervised = None
        if row["host"] in (here, None) and states is not None:  # None: no watchdog yet; maybe this host's
            supervised = worst_state([states.get(name) for name in process_names(row["name"], row["replicas"])])
        bot.hosts.append({"host": row["host"], "supervisord": supervised, "health": row["health"],
                          "reason": row["health_reason"], "heartbeat_age_s": row["heartbeat_age_s"],
                          "restarts_in_a_row": row["restarts_in_a_row"]})
    return {"bots": list(bots.values()), "watchdogs": watchdogs, "verdict_ok": code == OK, "verdict": line,
            "lock": lock, "here": here, "sparks": sparks}


async def render_topics(hub, topics) -> dict:
    """The live renderer of the fleet topic: the fleet table, read once for all open fleet pages."""
    view = await run_in_threadpool(fleet_view, hub.pool, hub.config)
    html = templates.get_template("fleet_live.html").render(root=f"{hub.config.api_root_path}/console", **view)
    return {topic: html for topic in topics}


@router.get("/")
def fleet_page(request: Request, who: Annotated[Viewer, Depends(viewer)]):
    view = fleet_view(request.app.state.pool, request.app.state.config)
    return page(request, "fleet.html", who, nav="fleet", **view)


@router.post("/lock")
def set_lock(request: Request, who: Annotated[Viewer, Depends(viewer)],
             action: Annotated[str, Form(pattern="^(lock|unlock)$")], reason: Annotated[str, Form()] = ""):
    """Lock the fleet for operations (only types that run when locked go on), or open it: as `botfleet lock`."""
    allowed(request, who, "admin")
    try:
        with request.app.state.pool.connection() as conn:
            if action == "lock":
                lock_fleet(conn, reason.strip(), actor(who))
            else:
                unlock_fleet(conn, actor(who))
            lock = read_lock(conn)
    except BotfleetError as exc:
        raise Refused(str(exc), status_code=422) from None
    return page(request, "lock.html", who, lock=lock)
