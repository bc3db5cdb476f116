"""The fleet's config folder: fleet.yaml, ticket types and one file per bot, validated as a whole.

Layout of a config folder:

    fleet.yaml                                  fleet-wide settings and the metaservices
    ticket_types/<metaservice>/<type>.yaml      one state graph per ticket type
    bots/<metaservice>-<type>-<code>-<name>.yaml one file per state of every type

Everything is checked before anything touches the database; the first problem found is raised as
a ConfigError naming file, line, field and value.
"""

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import yamlfile
from .durations import parse_duration_s
from .errors import ConfigError

NAME_PART = re.compile(r"^[a-z0-9_]+$")
# Bot names double as supervisord program names, PGAPPNAME and NOTIFY channels (63 bytes max).
MAX_BOT_NAME_BYTES = 56

FLEET_DEFAULTS = {
    "database_url": None,
    "heartbeat_interval": "2s",
    "watchdog": {"listen": "127.0.0.1:9108", "check_interval": "1s", "hung_after_missed_heartbeats": 3,
                 "start_grace": "10s", "fatal_retry_backoff": "10s", "fatal_retry_backoff_max": "5m",
                 "lease": "10s"},
    "api": {"listen": "127.0.0.1:8080"},
}
BOT_DEFAULTS = {
    "threads": 4,
    "sweep_interval": "30s",
    "lease": "30s",
    "batch_size": 32,
    "retries": 3,
    "retry_backoff": "1s",
    "replicas": 1,
    "stop_timeout": "10s",
}
TYPE_KEYS = {
    "description", "states", "transitions", "initial", "lifetime", "notification_frequency",
    "retention", "group_role", "exclusive", "runs_when_locked", "on_retention",
}
STATE_KEYS = {"code", "name", "description", "final"}
BOT_KEYS = {"handler"} | set(BOT_DEFAULTS)


@dataclass(frozen=True)
class State:
    code: int
    name: str
    description: str = ""
    final: bool = False


@dataclass(frozen=True)
class TicketType:
    metaservice: str
    name: str
    states: dict  # code -> State
    transitions: dict  # current code -> (normal next, *alternates)
    initial: int
    lifetime_s: float
    notification_frequency_s: float
    retention_s: float
    group_role: str | None = None
    exclusive: bool = False
    runs_when_locked: bool = False
    description: str = ""
    path: Path | None = None

    @property
    def key(self):
        return (self.metaservice, self.name)

    def next_states(self, code) -> tuple:
        """The normal next state first, then the alternates, in the order written."""
        return self.transitions.get(code, ())

    def allows(self, from_code, to_code) -> bool:
        return to_code in self.transitions.get(from_code, ())


@dataclass(frozen=True)
class BotSpec:
    name: str
    metaservice: str
    ticket_type: str
    state: int
    state_name: str
    final: bool
    handler: str | None
    threads: int
    sweep_interval_s: float
    lease_s: float
    batch_size: int
    retries: int
    retry_backoff_s: float
    replicas: int
    stop_timeout_s: float
    path: Path | None = None


@dataclass(frozen=True)
class WatchdogSettings:
    listen: str
    check_interval_s: float
    hung_after_missed_heartbeats: int
    start_grace_s: float  # a new process has this long (plus hung_after) to register; none after
    fatal_retry_backoff_s: float
    fatal_retry_backoff_max_s: float
    lease_s: float  # the fleet-wide lease one watchdog holds

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class FleetConfig:
    root: Path
    database_url: str | None
    heartbeat_interval_s: float
    watchdog: WatchdogSettings
    api_listen: str
    metaservices: dict  # name -> settings mapping
    types: dict = field(default_factory=dict)  # (metaservice, type) -> TicketType
    bots: dict = field(default_factory=dict)  # bot name -> BotSpec

    def ticket_type(self, metaservice, name) -> TicketType:
        try:
            return self.types[(metaservice, name)]
        except KeyError:
            raise KeyError(f"unknown ticket type {metaservice}/{name}") from None

    def bot(self, name) -> BotSpec:
        try:
            return self.bots[name]
        except KeyError:
            known = ", ".join(sorted(self.bots)) or "none"
            raise ConfigError(self.root / "bots", None, None, f"no bot named {name!r} (known: {known})") from None


def bot_name(metaservice, ticket_type, state: State) -> str:
    return f"{metaservice}-{ticket_type}-{state.code}-{state.name}"


def default_root() -> Path:
    env = os.environ.get("BOTFLEET_CONFIG")
    if env:
        return Path(env)
    here = Path.cwd() / "config"
    if (here / "fleet.yaml").exists():
        return here
    return Path(__file__).resolve().parent.parent / "config"


def load(root: Path | str | None = None) -> FleetConfig:
    root = Path(root) if root else default_root()
    root = root.resolve()
    if not (root / "fleet.yaml").exists():
        raise ConfigError(root / "fleet.yaml", None, None, "missing: a config folder needs fleet.yaml")
    fleet_doc = yamlfile.load(root / "fleet.yaml")
    fleet = _fleet(fleet_doc)
    bot_defaults = _mapping(fleet_doc, ("bot_defaults",), fleet_doc.data.get("bot_defaults", {}))
    types = _load_types(root, fleet_doc, fleet["metaservices"])
    bots = _load_bots(root, types, {**BOT_DEFAULTS, **bot_defaults}, fleet_doc)
    return FleetConfig(root=root, types=types, bots=bots, **fleet)


# -- fleet.yaml -------------------------------------------------------------------------------


def _mapping(doc, keys, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(keys, f"must be a mapping, got {value!r}")
    return value


def _duration(doc, keys, value) -> float:
    try:
        return parse_duration_s(value)
    except ValueError as exc:
        raise doc.error(keys, str(exc)) from None


def _unknown_keys(doc, keys, mapping, allowed):
    for key in mapping:
        if key not in allowed:
            raise doc.error(keys + (key,), f"unknown setting {key!r} (known: {', '.join(sorted(allowed))})")


def _fleet(doc) -> dict:
    data = _mapping(doc, (), doc.data)
    allowed = set(FLEET_DEFAULTS) | {"metaservices", "bot_defaults"}
    _unknown_keys(doc, (), data, allowed)
    merged = {**FLEET_DEFAULTS, **data}
    metaservices = merged.get("metaservices")
    if isinstance(metaservices, list):
        metaservices = {name: {} for name in metaservices}
    metaservices = _mapping(doc, ("metaservices",), metaservices)
    if not metaservices:
        raise doc.error(("metaservices",), "lists no metaservice")
    for name in metaservices:
        _name_part(doc, ("metaservices", name), name, "metaservice")
    for section in ("watchdog", "api"):
        _mapping(doc, (section,), merged[section])
    return {
        "database_url": merged["database_url"],
        "heartbeat_interval_s": _duration(doc, ("heartbeat_interval",), merged["heartbeat_interval"]),
        "watchdog": _watchdog(doc, merged["watchdog"] or {}),
        "api_listen": str({**FLEET_DEFAULTS["api"], **(merged["api"] or {})}["listen"]),
        "metaservices": {name: (settings or {}) for name, settings in metaservices.items()},
    }


def _listen(doc, keys, value) -> str:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise doc.error(keys, f"must be host:port, got {value!r}")
    return str(value)


def _watchdog(doc, section) -> WatchdogSettings:
    defaults = FLEET_DEFAULTS["watchdog"]
    _unknown_keys(doc, ("watchdog",), section, set(defaults))
    merged = {**defaults, **section}
    missed = merged["hung_after_missed_heartbeats"]
    if not isinstance(missed, int) or isinstance(missed, bool) or missed < 2:
        raise doc.error(("watchdog", "hung_after_missed_heartbeats"), f"must be an integer of at least 2, got {missed!r}")

    def duration(key):
        return _duration(doc, ("watchdog", key), merged[key])
    return WatchdogSettings(
        listen=_listen(doc, ("watchdog", "listen"), merged["listen"]),
        check_interval_s=duration("check_interval"), hung_after_missed_heartbeats=missed,
        start_grace_s=duration("start_grace"), fatal_retry_backoff_s=duration("fatal_retry_backoff"),
        fatal_retry_backoff_max_s=duration("fatal_retry_backoff_max"), lease_s=duration("lease"),
    )


def _name_part(doc, keys, value, what):
    if not isinstance(value, str) or not NAME_PART.match(value):
        raise doc.error(keys, f"{what} name {value!r} must use only a-z, 0-9 and _")


# -- ticket types -----------------------------------------------------------------------------


def _load_types(root, fleet_doc, metaservices) -> dict:
    types = {}
    type_root = root / "ticket_types"
    folders = sorted(p for p in type_root.iterdir() if p.is_dir()) if type_root.exists() else []
    for folder in folders:
        if folder.name not in metaservices:
            raise ConfigError(folder, None, None,
                              f"metaservice {folder.name!r} is not listed under metaservices in {root / 'fleet.yaml'}")
        for path in sorted(folder.glob("*.yaml")):
            ticket_type = parse_ticket_type(folder.name, path)
            types[ticket_type.key] = ticket_type
    for name in metaservices:
        if not any(key[0] == name for key in types):
            raise fleet_doc.error(("metaservices", name), f"metaservice {name!r} has no ticket type in {type_root / name}")
    return types


def parse_ticket_type(metaservice, path: Path) -> TicketType:
    doc = yamlfile.load(path)
    data = _mapping(doc, (), doc.data)
    _name_part(doc, (), path.stem, "ticket type (file)")
    _unknown_keys(doc, (), data, TYPE_KEYS)
    for required in ("states", "transitions", "lifetime", "notification_frequency", "retention"):
        if required not in data:
            raise doc.error((), f"missing required field {required!r}")

    states = {}
    names = set()
    if not isinstance(data["states"], list) or not data["states"]:
        raise doc.error(("states",), "must be a non-empty list of states")
    for index, raw in enumerate(data["states"]):
        keys = ("states", index)
        raw = _mapping(doc, keys, raw)
        _unknown_keys(doc, keys, raw, STATE_KEYS)
        code = raw.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or code < 0:
            raise doc.error(keys + ("code",), f"state code must be a non-negative integer, got {code!r}")
        if code in states:
            raise doc.error(keys + ("code",), f"state code {code} is defined twice")
        _name_part(doc, keys + ("name",), raw.get("name"), "state")
        if raw["name"] in names:
            raise doc.error(keys + ("name",), f"state name {raw['name']!r} is defined twice")
        names.add(raw["name"])
        final = raw.get("final", False)
        if not isinstance(final, bool):
            raise doc.error(keys + ("final",), f"must be true or false, got {final!r}")
        states[code] = State(code, raw["name"], str(raw.get("description", "")), final)

    transitions = {}
    if not isinstance(data["transitions"], list):
        raise doc.error(("transitions",), "must be a list like [[1,2],[2,3],[3,4,5]]")
    for index, row in enumerate(data["transitions"]):
        keys = ("transitions", index)
        if not isinstance(row, list) or len(row) < 2:
            raise doc.error(keys, f"each transition is [current, normal next, alternates...], got {row!r}")
        for position, code in enumerate(row):
            if code not in states:
                raise doc.error(keys + (position,), f"unknown state {code!r}")
        current, *targets = row
        if current in transitions:
            raise doc.error(keys + (0,), f"state {current} is listed twice as current state")
        if states[current].final:
            raise doc.error(keys + (0,), f"final state {current} cannot have transitions")
        if len(set(targets)) != len(targets) or current in targets:
            raise doc.error(keys, f"a transition lists a state twice or loops to itself: {row!r}")
        transitions[current] = tuple(targets)
    for code, state in states.items():
        if not state.final and code not in transitions:
            raise doc.error(("transitions",), f"state {code} ({state.name}) is not final and has no transition")

    initial = data.get("initial", data["transitions"][0][0] if data["transitions"] else None)
    if initial not in states or states[initial].final:
        raise doc.error(("initial",), f"initial state {initial!r} must be a non-final state of this type")

    flags = {}
    for flag in ("exclusive", "runs_when_locked"):
        value = data.get(flag, False)
        if not isinstance(value, bool):
            raise doc.error((flag,), f"must be true or false, got {value!r}")
        flags[flag] = value
    group_role = data.get("group_role")
    if group_role is not None and not isinstance(group_role, str):
        raise doc.error(("group_role",), f"must be a string, got {group_role!r}")
    ticket_type = TicketType(
        metaservice=metaservice, name=path.stem, states=states, transitions=transitions, initial=initial,
        lifetime_s=_duration(doc, ("lifetime",), data["lifetime"]),
        notification_frequency_s=_duration(doc, ("notification_frequency",), data["notification_frequency"]),
        retention_s=_duration(doc, ("retention",), data["retention"]),
        group_role=group_role, description=str(data.get("description", "")), path=path, **flags,
    )
    for state in states.values():
        name = bot_name(metaservice, path.stem, state)
        if len(name.encode()) > MAX_BOT_NAME_BYTES:
            raise doc.error(("states",), f"bot name {name!r} is longer than {MAX_BOT_NAME_BYTES} bytes; "
                                         "shorten the names")
    return ticket_type


# -- bots -------------------------------------------------------------------------------------


def _load_bots(root, types, defaults, fleet_doc) -> dict:
    bot_dir = root / "bots"
    expected = {}
    for ticket_type in types.values():
        for state in ticket_type.states.values():
            expected[bot_name(ticket_type.metaservice, ticket_type.name, state)] = (ticket_type, state)
    found = {path.stem: path for path in sorted(bot_dir.glob("*.yaml"))} if bot_dir.exists() else {}
    for name, path in found.items():
        if name not in expected:
            raise ConfigError(path, None, None,
                              f"bot file {path.name} matches no state of any ticket type "
                              f"(bot files are named <metaservice>-<type>-<code>-<state name>.yaml)")
    bots = {}
    for name, (ticket_type, state) in sorted(expected.items()):
        if name not in found:
            raise ConfigError(bot_dir / f"{name}.yaml", None, None,
                              f"missing: state {state.code} ({state.name}) of {ticket_type.metaservice}/"
                              f"{ticket_type.name} needs this bot file")
        bots[name] = _parse_bot(found[name], ticket_type, state, defaults)
    return bots


def _positive_int(doc, key, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise doc.error((key,), f"must be a positive integer, got {value!r}")
    return value


def _parse_bot(path, ticket_type, state, defaults) -> BotSpec:
    doc = yamlfile.load(path)
    data = _mapping(doc, (), doc.data)
    _unknown_keys(doc, (), data, BOT_KEYS)
    merged = {**defaults, **data}
    handler = merged.get("handler")
    if handler is None and not state.final:
        raise doc.error(("handler",), "missing: a bot of a non-final state needs handler: module:function")
    if handler is not None and (not isinstance(handler, str) or not re.match(r"^[\w.]+:[\w]+$", handler)):
        raise doc.error(("handler",), f"must be module.path:function, got {handler!r}")
    if merged["retries"] is not None and (not isinstance(merged["retries"], int) or merged["retries"] < 0):
        raise doc.error(("retries",), f"must be a non-negative integer, got {merged['retries']!r}")
    spec = BotSpec(
        name=path.stem, metaservice=ticket_type.metaservice, ticket_type=ticket_type.name,
        state=state.code, state_name=state.name, final=state.final, handler=handler,
        threads=_positive_int(doc, "threads", merged["threads"]),
        sweep_interval_s=_duration(doc, ("sweep_interval",), merged["sweep_interval"]),
        lease_s=_duration(doc, ("lease",), merged["lease"]),
        batch_size=_positive_int(doc, "batch_size", merged["batch_size"]),
        retries=merged["retries"],
        retry_backoff_s=_duration(doc, ("retry_backoff",), merged["retry_backoff"]),
        replicas=_positive_int(doc, "replicas", merged["replicas"]),
        stop_timeout_s=_duration(doc, ("stop_timeout",), merged["stop_timeout"]),
        path=path,
    )
    if spec.lease_s < 1:
        raise doc.error(("lease",), f"must be at least 1s, got {merged['lease']!r}")
    return spec


def import_handler(spec: BotSpec):
    """The handler function of a bot; a ConfigError naming the bot file when it cannot be imported."""
    module_name, _, function_name = spec.handler.partition(":")
    doc = yamlfile.load(spec.path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error of any kind is a config problem of this bot
        raise doc.error(("handler",), f"cannot import module {module_name!r}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise doc.error(("handler",), f"module {module_name!r} has no function {function_name!r}")
    return function


def check_handlers(config: FleetConfig):
    for spec in config.bots.values():
        if spec.handler:
            import_handler(spec)
