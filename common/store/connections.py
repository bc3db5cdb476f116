"""The fleet's connection budget: the server connections a host's fleet needs, and whether the server has them.

Every process's figure is written here once, so the API's pools, the sum and the embedded server's size
agree. A host's fleet needs, in connections:

    bot processes (bots x replicas on the host, the API's excepted) x BOT_CONNECTIONS
    + the API's processes x API_CONNECTIONS (the maximum sizes of its two pools)
    + WATCHDOG_CONNECTIONS
    + OPS_HEADROOM_CONNECTIONS (an operator's `botfleet` commands and psql sessions)

It fits when that is at most what the server has available: max_connections, minus the slots it keeps for
superusers and for roles with pg_use_reserved_connections (reserved_connections, PostgreSQL 16+), minus the
client connections of other hosts and other clients at the time of the check. Above WARN_FRACTION of what
is available it fits, with a warning.

A client connection belongs to this host's fleet when it runs as the same role as the check, comes from the
same client address as the check (both on the server's unix socket, or both from the same IP), and its
application_name, up to a first ':', is the name of a process of this host's fleet: a bot's name,
botfleet-watchdog (':http' for /metrics) or botfleet-api. Every other
client backend counts as used by others, this host's other clients (a `botfleet ticket` command, psql)
included. Behind NAT or a pooler that shows every host under one address, the same bot on another host
would count as this host's: give each host its own address, or bots of their own, for the figures to hold.
"""

import math
from dataclasses import dataclass

from common.config.builtin import API_BOT
from common.errors import EX_CONFIG, BotfleetError
from common.store import sql

# A bot's one connection carries its work and its LISTEN: psycopg delivers notifications on the connection
# the control loop waits on.
BOT_CONNECTIONS = 1
# The watchdog's checks hold one; its /metrics and /healthz share another (watchdog/http_session.py).
WATCHDOG_CONNECTIONS = 2
# The API's pools (api/app.py): routes run in the thread pool, and routes on the event loop (api/aio.py).
API_POOL_MIN, API_POOL_MAX = 1, 8
API_AIO_POOL_MIN, API_AIO_POOL_MAX = 2, 16
# The console's one LISTEN (api/console/live.py), shared by every page open on the process.
API_LIVE_CONNECTIONS = 1
API_CONNECTIONS = API_POOL_MAX + API_AIO_POOL_MAX + API_LIVE_CONNECTIONS
# `botfleet up` itself (its migrations and this check), an operator's commands and a psql or two.
OPS_HEADROOM_CONNECTIONS = 5

# The application_name of each kind of process, as pg_stat_activity shows it.
WATCHDOG_APPLICATION_NAME = "botfleet-watchdog"
API_APPLICATION_NAME = "botfleet-api"
APPLICATION_NAME_MAX = 63  # PostgreSQL keeps this many bytes of an application_name

WARN_FRACTION = 0.8  # a fleet needing more than this share of what is available is warned about

# PostgreSQL's own default, and the least the embedded server starts with: a small fleet's server is the
# one an operator knows. Above it, twice the fleet's need: the fleet stays near half of the server, well
# below the warning, and a few more bots or an operator's tools fit without a restart.
DEFAULT_MAX_CONNECTIONS = 100
EMBEDDED_HEADROOM_FACTOR = 2


@dataclass(frozen=True)
class FleetNeed:
    """What one host's fleet holds at most: its processes by kind, and their application names."""

    bot_processes: int  # bots x replicas, the API's processes excepted
    api_processes: int
    watchdogs: int = 1
    application_names: tuple = ()

    @property
    def connections(self) -> int:
        return (self.bot_processes * BOT_CONNECTIONS + self.api_processes * API_CONNECTIONS
                + self.watchdogs * WATCHDOG_CONNECTIONS + OPS_HEADROOM_CONNECTIONS)

    def describe(self) -> str:
        parts = [f"{self.bot_processes} bot process(es) x {BOT_CONNECTIONS}"]
        if self.api_processes:
            parts.append(f"the API {self.api_processes * API_CONNECTIONS} (pools of {API_POOL_MAX} and "
                         f"{API_AIO_POOL_MAX}, the console's listener {API_LIVE_CONNECTIONS}{f', x {self.api_processes}' if self.api_processes > 1 else ''})")
        parts.append(f"the watchdog {self.watchdogs * WATCHDOG_CONNECTIONS}")
        parts.append(f"{OPS_HEADROOM_CONNECTIONS} for commands and operators")
        return ", ".join(parts)


@dataclass(frozen=True)
class ServerSlots:
    """The server's side: its connection slots, and the client connections that are not this host's fleet."""

    max_connections: int
    superuser_reserved: int
    reserved: int  # reserved_connections; 0 before PostgreSQL 16
    used_by_others: int

    @property
    def all_reserved(self) -> int:
        return self.superuser_reserved + self.reserved


@dataclass(frozen=True)
class Budget:
    """A verdict: `level` is ok, warning or refused; `message` says why, with every number."""

    level: str
    needed: int
    available: int
    need: FleetNeed
    server: ServerSlots

    @property
    def fits(self) -> bool:
        return self.level != "refused"

    @property
    def figures(self) -> str:
        s = self.server
        return (f"max_connections {s.max_connections} - {s.all_reserved} reserved (superuser_reserved_connections "
                f"{s.superuser_reserved}, reserved_connections {s.reserved}) - {s.used_by_others} used by other "
                f"hosts and clients = {self.available} available")

    @property
    def message(self) -> str:
        if self.level == "refused":
            return (f"this host's fleet needs {self.needed} PostgreSQL connections but only {self.available} are "
                    f"available: {self.figures}; needed: {self.need.describe()}. Raise max_connections on the "
                    f"server, or run fewer bots or replicas on this host")
        share = f"{self.needed} of {self.available} available connections"
        if self.level == "warning":
            return (f"this host's fleet needs {share} ({self.needed / self.available:.0%}, above "
                    f"{WARN_FRACTION:.0%}): {self.figures}; needed: {self.need.describe()}")
        return f"this host's fleet needs {share}: {self.figures}"


def budget(need: FleetNeed, server: ServerSlots) -> Budget:
    """The verdict on a host's need against the server: refused when it cannot fit, a warning above
    WARN_FRACTION of what is available."""
    available = max(0, server.max_connections - server.all_reserved - server.used_by_others)
    needed = need.connections
    level = "refused" if needed > available else "warning" if needed > WARN_FRACTION * available else "ok"
    return Budget(level, needed, available, need, server)


def fleet_need(config, host=None) -> FleetNeed:
    """What this host's fleet (or the named host's) needs, from the config: its bots and their replicas."""
    bots = config.local_bots(host).values()
    api = sum(spec.replicas for spec in bots if spec.name == API_BOT)
    names = {spec.name for spec in bots if spec.name != API_BOT} | {WATCHDOG_APPLICATION_NAME}
    if api:
        names.add(API_APPLICATION_NAME)
    return FleetNeed(bot_processes=sum(spec.replicas for spec in bots) - api, api_processes=api,
                     application_names=tuple(sorted(name[:APPLICATION_NAME_MAX] for name in names)))


def embedded_max_connections(config) -> int:
    """max_connections for the embedded server: it listens on a unix socket only, so every host of the fleet
    that uses it runs on this machine and all of them are counted."""
    hosts = sorted(config.hosts) or [None]
    needed = sum(fleet_need(config, host).connections for host in hosts)
    return max(DEFAULT_MAX_CONNECTIONS, math.ceil(EMBEDDED_HEADROOM_FACTOR * needed))


class ConnectionBudgetError(BotfleetError):
    """The fleet cannot fit in the server's connections: a mismatch of config and server, exit 78 as a bad config."""

    exit_code = EX_CONFIG


def read_server(conn, need: FleetNeed) -> ServerSlots:
    row = conn.execute(sql.SERVER_CONNECTION_SLOTS, {"fleet_names": list(need.application_names)}).fetchone()
    return ServerSlots(max_connections=row["max_connections"], superuser_reserved=row["superuser_reserved"],
                       reserved=row["reserved"], used_by_others=row["used_by_others"])


def measure(conn, need: FleetNeed) -> Budget:
    """The verdict against the server `conn` is connected to, as things stand there now."""
    return budget(need, read_server(conn, need))
