"""The fleet's config folder: fleet.yaml, ticket types and one file per bot, validated as a whole.

Layout of a config folder:

    fleet.yaml                                  fleet-wide settings and the metaservices
    ticket_types/<metaservice>/<type>.yaml      one state graph per ticket type
    bots/<metaservice>-<type>-<code>-<name>.yaml one file per state of every type

Everything is checked before anything touches the database; the first problem found is raised as
a ConfigError naming file, line, field and value.
"""

import fnmatch
import os
import re
from pathlib import Path

from common.config import yamlfile
from common.config.builtin import (
    API_BOT,
    API_TICKET_TYPE,
    BUILTIN_TYPES,
    MAIL_BOT,
    MAIL_TICKET_TYPE,
    STATUS_BOT,
    STATUS_TICKET_TYPE,
    SWEEP_BOT,
    SWEEP_TICKET_TYPE,
    WEBHOOK_BOT,
    WEBHOOK_TICKET_TYPE,
)
from common.config.durations import parse_duration_s
from common.config.models import (
    CALLBACK_PREFIX_PATTERN,
    CALLBACK_URL_PATTERN,
    DEFAULT_SECRET_ENV,
    JOB_STATUSES,
    OUTCOMES,
    BotSpec,
    ExternalWork,
    FleetConfig,
    HostSpec,
    JobsSettings,
    MailSettings,
    State,
    TicketType,
    WatchdogSettings,
    WebhookSettings,
)
from common.config.names import MAX_BOT_NAME_BYTES, NAME_PART, bot_name
from common.config.people import EMAIL, PERSON_NAME, parse_window
from common.config.status_models import load_status_models, parse_statusek_settings
from common.errors import ConfigError

FLEET_DEFAULTS = {
    "database_url": None,
    # Every process of the fleet wakes once per heartbeat even with nothing to do, and that is what an idle
    # fleet costs: 5s keeps 25 processes and their server under 2% of a core, and a hung bot is still
    # found within 15s (3 missed), sooner than a person would notice.
    "heartbeat_interval": "5s",
    "watchdog": {"listen": "127.0.0.1:9108", "check_interval": "2s", "hung_after_missed_heartbeats": 3,
                 "start_grace": "10s", "fatal_retry_backoff": "10s", "fatal_retry_backoff_max": "5m",
                 "restart_backoff": "10s", "restart_backoff_max": "5m", "lease": "10s", "stale_after": None,
                 "stalled_after": None},
    # root_path: the prefix a reverse proxy serves the API under ("/botfleet"), so the console's links carry it.
    "api": {"listen": "127.0.0.1:8080", "root_path": ""},
    "max_payload_bytes": 1024 * 1024,
}
BOT_DEFAULTS = {
    "threads": 4,
    "sweep_interval": "30s",
    "lease": None,  # LEASE_HEARTBEATS heartbeat intervals
    "batch_size": 32,
    "retries": 3,
    "retry_backoff": "1s",
    "replicas": 1,
    "stop_timeout": "10s",
    "handler_timeout": "5m",
    "stuck_after": None,  # off: no ticket is reported for its long stay
}
TYPE_KEYS = {
    "description", "states", "transitions", "initial", "lifetime", "notification_frequency",
    "retention", "group_role", "exclusive", "runs_when_locked", "on_timeout", "on_retention", "job",
    "retries", "max_runtime",
    "callback_url", "callback_secret_env",
}
STATE_KEYS = {"code", "name", "description", "final", "outcome", "retention"}
# A state worked by external workers (seed 002): per bot file, never in bot_defaults.
WORKER_DEFAULTS = {"progress": [], "stall_timeout": "5m", "max_attempts": 3, "failure_state": None}
PROGRESS_MESSAGE = r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$"
BOT_KEYS = {"handler", "worker"} | set(BOT_DEFAULTS) | set(WORKER_DEFAULTS)
LEASE_HEARTBEATS = 5  # the default lease, in heartbeat intervals
MIN_LEASE_HEARTBEATS = 3  # shorter, and one slow heartbeat would hand a live bot's tickets to another


def default_root() -> Path:
    """$BOTFLEET_CONFIG, else ./config: never a folder found relative to the installed code."""
    return Path(os.environ.get("BOTFLEET_CONFIG") or Path.cwd() / "config")


def load(root: Path | str | None = None) -> FleetConfig:
    root = Path(root) if root else default_root()
    root = root.resolve()
    if not (root / "fleet.yaml").exists():
        raise ConfigError(root / "fleet.yaml", None, None,
                          "missing: a config folder needs fleet.yaml (choose the folder with --config DIR or "
                          "BOTFLEET_CONFIG)")
    fleet_doc = yamlfile.load(root / "fleet.yaml")
    fleet = _fleet(fleet_doc)
    bot_defaults = _mapping(fleet_doc, ("bot_defaults",), fleet_doc.data.get("bot_defaults", {}))
    _unknown_keys(fleet_doc, ("bot_defaults",), bot_defaults, set(BOT_DEFAULTS))
    types = _load_types(root, fleet_doc, fleet["metaservices"])
    bots = _load_bots(root, types, bot_defaults, fleet_doc, fleet["heartbeat_interval_s"])
    hung_after_s = fleet["heartbeat_interval_s"] * fleet["watchdog"].hung_after_missed_heartbeats
    mail = _mail(fleet_doc, fleet_doc.data.get("mail"), hung_after_s)
    if mail is not None:
        bots[MAIL_BOT] = _builtin_bot(fleet_doc, bot_defaults, fleet["heartbeat_interval_s"], MAIL_BOT,
                                      MAIL_TICKET_TYPE, "mail")
    if fleet_doc.data.get("api") is not None:  # an api: section runs the API as a program of the fleet
        bots[API_BOT] = _builtin_bot(fleet_doc, bot_defaults, fleet["heartbeat_interval_s"], API_BOT,
                                     API_TICKET_TYPE, "api")
    webhooks = _webhooks(fleet_doc, fleet_doc.data.get("webhooks"), hung_after_s)
    # Callback URLs come from types, or from tickets made over the API: either way somebody delivers them.
    if API_BOT in bots or "webhooks" in fleet_doc.data or any(t.callback_url for t in types.values()):
        bots[WEBHOOK_BOT] = _builtin_bot(fleet_doc, bot_defaults, fleet["heartbeat_interval_s"], WEBHOOK_BOT,
                                         WEBHOOK_TICKET_TYPE, "webhook")
    # Jobs come with the API: so does the sweeper that clears them (or a jobsweeper: section on its own).
    sweep_every_s = _jobsweeper(fleet_doc, fleet_doc.data.get("jobsweeper"))
    if API_BOT in bots or "jobsweeper" in fleet_doc.data:
        bots[SWEEP_BOT] = _builtin_bot(fleet_doc, bot_defaults, fleet["heartbeat_interval_s"], SWEEP_BOT,
                                       SWEEP_TICKET_TYPE, "sweep")
    status_models = load_status_models(root)
    if status_models:  # their instances time out whether or not anybody asks about them
        bots[STATUS_BOT] = _builtin_bot(fleet_doc, bot_defaults, fleet["heartbeat_interval_s"], STATUS_BOT,
                                        STATUS_TICKET_TYPE, "status")
    hosts = _hosts(fleet_doc, fleet_doc.data.get("hosts"), bots)
    people = _people(fleet_doc, fleet_doc.data.get("people"))
    jobs = _jobs(fleet_doc, fleet_doc.data.get("jobs"), types)
    return FleetConfig(root=root, types=types, bots=bots, builtin_types=dict(BUILTIN_TYPES), hosts=hosts,
                       people=people, mail=mail, jobs=jobs, webhooks=webhooks, sweep_every_s=sweep_every_s,
                       status_models=status_models,
                       statusek_open_create=parse_statusek_settings(fleet_doc, fleet_doc.data.get("statusek")),
                       hosts_line=fleet_doc.line("hosts") if hosts else None, **fleet)


def load_for_monitoring(root: Path | str | None = None) -> tuple[FleetConfig, ConfigError | None]:
    """The config and None; or, when it is broken, what monitoring needs to find the fleet's database and
    judge the fleet from there (fleet.yaml's settings if they can be read, else the defaults; no types, no
    bots) and the error, for the caller to report as one more problem. Someone breaking the config must not
    blind `check` and `status`: the processes already running keep the config they started with."""
    try:
        return load(root), None
    except ConfigError as error:
        root = (Path(root) if root else default_root()).resolve()
        try:
            fleet = _fleet(yamlfile.load(root / "fleet.yaml"))
        except ConfigError:
            # _fleet insists on a metaservice; monitoring reads none, so a placeholder stands in.
            fleet = _fleet(yamlfile.Located(root / "fleet.yaml", {"metaservices": ["unknown"]}, {}))
        return FleetConfig(root=root, builtin_types=dict(BUILTIN_TYPES), **fleet), error


# -- fleet.yaml -------------------------------------------------------------------------------


def _mapping(doc, keys, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(keys, f"must be a mapping, got {value!r}")
    return value


def _duration(doc, keys, value) -> float:
    try:
        seconds = parse_duration_s(value)
    except ValueError as exc:
        raise doc.error(keys, str(exc)) from None
    if seconds <= 0:
        raise doc.error(keys, f"must be longer than zero, got {value!r}")
    return seconds


def _unknown_keys(doc, keys, mapping, allowed):
    for key in mapping:
        if key not in allowed:
            raise doc.error(keys + (key,), f"unknown setting {key!r} (known: {', '.join(sorted(allowed))})")


def _fleet(doc) -> dict:
    data = _mapping(doc, (), doc.data)
    allowed = set(FLEET_DEFAULTS) | {"metaservices", "bot_defaults", "hosts", "people", "mail", "jobs", "webhooks",
                                     "jobsweeper", "statusek"}
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
    _unknown_keys(doc, ("api",), merged["api"] or {}, set(FLEET_DEFAULTS["api"]))
    api = {**FLEET_DEFAULTS["api"], **(merged["api"] or {})}
    return {
        "database_url": merged["database_url"],
        "heartbeat_interval_s": _duration(doc, ("heartbeat_interval",), merged["heartbeat_interval"]),
        "watchdog": _watchdog(doc, merged["watchdog"] or {},
                              _duration(doc, ("heartbeat_interval",), merged["heartbeat_interval"])),
        "api_listen": _listen(doc, ("api", "listen"), api["listen"]),
        "api_root_path": _root_path(doc, ("api", "root_path"), api["root_path"]),
        "metaservices": {name: (settings or {}) for name, settings in metaservices.items()},
        "max_payload_bytes": _positive_int(doc, "max_payload_bytes", merged["max_payload_bytes"]),
    }


def _root_path(doc, keys, value) -> str:
    """"" or a path such as "/ops/botfleet": starting with "/", without a trailing one, nothing a URL would escape."""
    text = "" if value is None else str(value)
    if text and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", text):
        raise doc.error(keys, f'must be a path like "/botfleet" (a leading "/", none at the end), got {value!r}')
    return text


def _listen(doc, keys, value) -> str:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise doc.error(keys, f"must be host:port, got {value!r}")
    return str(value)


def _watchdog(doc, section, heartbeat_interval_s) -> WatchdogSettings:
    defaults = FLEET_DEFAULTS["watchdog"]
    _unknown_keys(doc, ("watchdog",), section, set(defaults))
    merged = {**defaults, **section}
    missed = merged["hung_after_missed_heartbeats"]
    if not isinstance(missed, int) or isinstance(missed, bool) or missed < 2:
        raise doc.error(("watchdog", "hung_after_missed_heartbeats"), f"must be an integer of at least 2, got {missed!r}")

    def duration(key):
        return _duration(doc, ("watchdog", key), merged[key])
    check_interval_s = duration("check_interval")
    # By default the watchdog is stale after two of the bots' heartbeat intervals, and never after
    # fewer than three of its own checks, so that one slow check does not raise an alarm.
    stale_after_s = (max(2 * heartbeat_interval_s, 3 * check_interval_s) if merged["stale_after"] is None
                     else duration("stale_after"))
    if stale_after_s < 2 * check_interval_s:
        raise doc.error(("watchdog", "stale_after"), f"must be at least two check intervals "
                                                      f"({2 * check_interval_s:g}s), got {merged['stale_after']!r}")
    # A bot's `processed` moves with its heartbeats only: a stretch without progress means something only once
    # it spans a hung threshold. By default four of them (1 minute as shipped): well past the time a healthy bot
    # takes to write a step, and minutes before handler_timeout (5m) would give up the runs that jam it.
    hung_after_s = heartbeat_interval_s * missed
    stalled_after_s = 4 * hung_after_s if merged["stalled_after"] is None else duration("stalled_after")
    if stalled_after_s < hung_after_s:
        raise doc.error(("watchdog", "stalled_after"), f"must be at least the hung threshold ({hung_after_s:g}s: "
                                                        f"heartbeats carry the counts), got {merged['stalled_after']!r}")
    return WatchdogSettings(
        listen=_listen(doc, ("watchdog", "listen"), merged["listen"]),
        check_interval_s=check_interval_s, hung_after_missed_heartbeats=missed,
        start_grace_s=duration("start_grace"), fatal_retry_backoff_s=duration("fatal_retry_backoff"),
        fatal_retry_backoff_max_s=duration("fatal_retry_backoff_max"), lease_s=duration("lease"),
        stale_after_s=stale_after_s, restart_backoff_s=duration("restart_backoff"),
        restart_backoff_max_s=duration("restart_backoff_max"), stalled_after_s=stalled_after_s,
    )


HOST_KEYS = {"bots", "watchdog_listen"}
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hosts(doc, section, bots) -> dict:
    """`hosts:` of fleet.yaml: which host runs which bots (glob patterns on bot names). Every pattern
    must match a bot and every bot must have a host, so a typo cannot leave a state without its bot."""
    section = _mapping(doc, ("hosts",), section)
    hosts = {}
    for name, entry in section.items():
        keys = ("hosts", name)
        if not isinstance(name, str) or not HOST_NAME.match(name):
            raise doc.error(keys, f"host name {name!r} must be letters, digits, '.', '_' or '-'")
        entry = _mapping(doc, keys, entry)
        _unknown_keys(doc, keys, entry, HOST_KEYS)
        patterns = entry.get("bots")
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise doc.error(keys + ("bots",), f"must be a non-empty list of bot names or patterns like "
                                              f"helpdesk-*, got {patterns!r}")
        chosen = set()
        for index, pattern in enumerate(patterns):
            matched = fnmatch.filter(bots, pattern)
            if not matched:
                raise doc.error(keys + ("bots", index), f"{pattern!r} matches no bot")
            chosen.update(matched)
        listen = entry.get("watchdog_listen")
        hosts[name] = HostSpec(name, frozenset(chosen),
                               None if listen is None else _listen(doc, keys + ("watchdog_listen",), listen))
    if hosts:
        orphans = sorted(set(bots) - set().union(*(h.bots for h in hosts.values())))
        if orphans:
            raise doc.error(("hosts",), f"no host runs {', '.join(orphans)}: add it to a host's bots")
    return hosts


CALLBACK_URL = re.compile(CALLBACK_URL_PATTERN)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WEBHOOK_DEFAULTS = {"max_tries": 8, "retry_backoff": "1s", "max_backoff": "5m", "timeout": "2s",
                    "keep_delivered": "1d", "keep_failed": "14d", "allow": []}


def _jobsweeper(doc, section) -> float:
    """`jobsweeper: {every: 1h}`: how often the JOBSWEEPER runs."""
    section = _mapping(doc, ("jobsweeper",), section)
    _unknown_keys(doc, ("jobsweeper",), section, {"every"})
    return _duration(doc, ("jobsweeper", "every"), section.get("every", "1h"))


def _network_timeout(doc, name, section, merged, hung_after_s) -> float:
    """`<name>.timeout`: how long a send waits on another server (per connect, per answer)."""
    timeout_s = _duration(doc, (name, "timeout"), merged["timeout"])
    if "timeout" not in section:  # the default, within what fast heartbeats allow
        timeout_s = min(timeout_s, hung_after_s / 2)
    if timeout_s > hung_after_s / 2:
        # Sends run off the control loop, but a batch's lease grows with the timeout, and with it how long
        # what a dead bot was sending waits to go out again: kept within a few hung thresholds.
        raise doc.error((name, "timeout"), f"must be at most half the hung threshold "
                                           f"({hung_after_s / 2:g}s), got {merged['timeout']!r}")
    return timeout_s


def _webhooks(doc, section, hung_after_s) -> WebhookSettings:
    """`webhooks:` of fleet.yaml (all optional): how state changes are POSTed to callback URLs."""
    section = _mapping(doc, ("webhooks",), section)
    _unknown_keys(doc, ("webhooks",), section, set(WEBHOOK_DEFAULTS))
    merged = {**WEBHOOK_DEFAULTS, **section}
    tries = merged["max_tries"]
    if not isinstance(tries, int) or isinstance(tries, bool) or tries < 1:
        raise doc.error(("webhooks", "max_tries"), f"must be a positive integer, got {tries!r}")
    timeout_s = _network_timeout(doc, "webhooks", section, merged, hung_after_s)
    return WebhookSettings(max_tries=tries, retry_backoff_s=_duration(doc, ("webhooks", "retry_backoff"),
                                                                      merged["retry_backoff"]),
                           max_backoff_s=_duration(doc, ("webhooks", "max_backoff"), merged["max_backoff"]),
                           timeout_s=timeout_s,
                           keep_delivered_s=_duration(doc, ("webhooks", "keep_delivered"), merged["keep_delivered"]),
                           keep_failed_s=_duration(doc, ("webhooks", "keep_failed"), merged["keep_failed"]),
                           allow=_callback_prefixes(doc, merged["allow"]))


def _callback_prefixes(doc, allow) -> tuple:
    """`webhooks.allow`: the URL prefixes a ticket's own callback_url may start with."""
    if allow is None:
        return ()
    if not isinstance(allow, list):
        raise doc.error(("webhooks", "allow"), f"must be a list of URL prefixes, got {allow!r}")
    for index, prefix in enumerate(allow):
        if not (isinstance(prefix, str) and re.match(CALLBACK_PREFIX_PATTERN, prefix)):
            raise doc.error(("webhooks", "allow", index), "must be an http:// or https:// URL prefix with at least "
                                                          f"the '/' after the host, like https://hooks.example.org/, "
                                                          f"got {prefix!r}")
    return tuple(allow)


MAIL_DEFAULTS = {"host": "localhost", "port": 25, "security": "none", "username": None, "password_env": None,
                 "from": "botfleet@localhost", "max_tries": 5, "retry_backoff": "1m", "operators_group": "operators",
                 "keep_delivered": "30d", "stuck_after": "1h", "timeout": "10s"}


def _jobs(doc, section, types) -> JobsSettings | None:
    """`jobs: {type: ms/type, statuses: {pending: 1, ...}}`: the job type of POST /job. Statuses not given
    are found from the type: pending its initial state, in_progress that state's normal next, completed
    and failed its final states with those outcomes."""
    if section is None:
        return None
    section = _mapping(doc, ("jobs",), section)
    _unknown_keys(doc, ("jobs",), section, {"type", "statuses"})
    key = section.get("type")
    if not isinstance(key, str) or key.count("/") != 1:
        raise doc.error(("jobs", "type"), f"must name a ticket type as metaservice/type, got {key!r}")
    kind = types.get(tuple(key.split("/")))
    if kind is None:
        raise doc.error(("jobs", "type"), f"there is no ticket type {key}")
    if not kind.job:
        raise doc.error(("jobs", "type"), f"{key} is not a job type: add job: true to {kind.path}")
    by_outcome = {state.outcome: state.code for state in kind.states.values() if state.outcome}
    normal_next = kind.next_states(kind.initial)[0]
    statuses = {"pending": kind.initial, "completed": by_outcome["succeeded"], "failed": by_outcome["failed"]}
    if not kind.states[normal_next].final:
        statuses["in_progress"] = normal_next
    given = _mapping(doc, ("jobs", "statuses"), section.get("statuses"))
    for status, code in given.items():
        if status not in JOB_STATUSES:
            raise doc.error(("jobs", "statuses", status), f"unknown job status (known: {', '.join(JOB_STATUSES)})")
        if code not in kind.states:
            raise doc.error(("jobs", "statuses", status), f"{key} has no state {code!r}")
        statuses[status] = code
    missing = [status for status in JOB_STATUSES if status not in statuses]
    if missing:
        raise doc.error(("jobs", "statuses"), f"says no state for {', '.join(missing)}")
    return JobsSettings(kind.metaservice, kind.name, {status: statuses[status] for status in JOB_STATUSES})


def _mail(doc, section, hung_after_s) -> MailSettings | None:
    """`mail:` of fleet.yaml; absent: notifications are not mailed, and no mail bot runs."""
    if section is None:
        return None
    section = _mapping(doc, ("mail",), section)
    _unknown_keys(doc, ("mail",), section, set(MAIL_DEFAULTS))
    merged = {**MAIL_DEFAULTS, **section}
    if merged["security"] not in ("none", "starttls", "tls"):
        raise doc.error(("mail", "security"), f"must be none, starttls or tls, got {merged['security']!r}")
    port = merged["port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise doc.error(("mail", "port"), f"must be a port number, got {port!r}")
    tries = merged["max_tries"]
    if not isinstance(tries, int) or isinstance(tries, bool) or tries < 1:
        raise doc.error(("mail", "max_tries"), f"must be a positive integer, got {tries!r}")
    return MailSettings(
        host=str(merged["host"]), port=port, security=merged["security"], username=merged["username"],
        password_env=merged["password_env"], sender=str(merged["from"]), max_tries=tries,
        retry_backoff_s=_duration(doc, ("mail", "retry_backoff"), merged["retry_backoff"]),
        operators_group=str(merged["operators_group"]),
        keep_delivered_s=_duration(doc, ("mail", "keep_delivered"), merged["keep_delivered"]),
        stuck_after_s=_duration(doc, ("mail", "stuck_after"), merged["stuck_after"]),
        timeout_s=_network_timeout(doc, "mail", section, merged, hung_after_s),
    )


def _builtin_bot(doc, bot_defaults, heartbeat_interval_s, name, ticket_type, duty) -> BotSpec:
    """A built-in bot (mail, the API, webhooks, the JOBSWEEPER): bot_defaults apply to it as to every bot."""
    state = ticket_type.states[1]
    merged = {**BOT_DEFAULTS, **bot_defaults}

    def duration(key):
        return _duration(doc, ("bot_defaults", key), merged[key])
    return BotSpec(
        name=name, metaservice=ticket_type.metaservice, ticket_type=ticket_type.name,
        state=state.code, state_name=state.name, final=False, handler=None, threads=1,
        sweep_interval_s=duration("sweep_interval"),
        lease_s=LEASE_HEARTBEATS * heartbeat_interval_s if merged["lease"] is None else duration("lease"),
        batch_size=1, retries=0, retry_backoff_s=duration("retry_backoff"), replicas=1,
        stop_timeout_s=duration("stop_timeout"), handler_timeout_s=duration("handler_timeout"), duty=duty,
    )


USER_KEYS = {"email", "window", "tz"}


def _people(doc, section) -> dict:
    """`people:` of fleet.yaml: users and groups that `db upgrade` creates when missing (and never removes
    or changes: after that, `botfleet user|group` manage them)."""
    section = _mapping(doc, ("people",), section)
    _unknown_keys(doc, ("people",), section, {"users", "groups"})
    users = {}
    for name, entry in _mapping(doc, ("people", "users"), section.get("users")).items():
        keys = ("people", "users", name)
        if not isinstance(name, str) or not PERSON_NAME.match(name):
            raise doc.error(keys, f"user name {name!r} must be letters, digits, '.', '_', '@' or '-'")
        entry = _mapping(doc, keys, entry)
        _unknown_keys(doc, keys, entry, USER_KEYS)
        email = entry.get("email")
        if email is not None and not EMAIL.match(str(email)):
            raise doc.error(keys + ("email",), f"{email!r} is not an email address")
        try:
            window = parse_window(entry.get("window"))  # (start, end) or None
        except ValueError as exc:
            raise doc.error(keys + ("window",), str(exc)) from None
        users[name] = {"email": email, "window": window, "tz": str(entry.get("tz", "UTC"))}
    groups = {}
    for name, members in _mapping(doc, ("people", "groups"), section.get("groups")).items():
        keys = ("people", "groups", name)
        if not isinstance(name, str) or not PERSON_NAME.match(name):
            raise doc.error(keys, f"group name {name!r} must be letters, digits, '.', '_', '@' or '-'")
        if not isinstance(members, list) or any(m not in users for m in members):
            raise doc.error(keys, f"must list users of people.users, got {members!r}")
        groups[name] = list(members)
    return {"users": users, "groups": groups}


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
        outcome = raw.get("outcome")
        if outcome is not None and (outcome not in OUTCOMES or not final):
            raise doc.error(keys + ("outcome",), f"must be one of {', '.join(OUTCOMES)}, on a final state; "
                                                 f"got {outcome!r}")
        retention_s = _duration(doc, keys + ("retention",), raw["retention"]) if "retention" in raw else None
        states[code] = State(code, raw["name"], str(raw.get("description", "")), final, outcome, retention_s)

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
    for flag in ("exclusive", "runs_when_locked", "job"):
        value = data.get(flag, False)
        if not isinstance(value, bool):
            raise doc.error((flag,), f"must be true or false, got {value!r}")
        flags[flag] = value
    outcomes = {state.outcome for state in states.values()}
    if flags["job"] and not set(OUTCOMES) <= outcomes:
        raise doc.error(("job",), "a job type needs a final state with outcome: succeeded and one with "
                                  "outcome: failed, so /operations can tell how each job ended")
    if not flags["job"] and outcomes - {None}:
        raise doc.error(("job",), "states with an outcome belong to a job type: add job: true")
    on_timeout = _on_timeout(doc, data.get("on_timeout"), states, transitions)
    on_retention = data.get("on_retention", "delete")
    if on_retention not in ("delete", "archive"):
        raise doc.error(("on_retention",), f"must be delete or archive, got {on_retention!r}")
    group_role = data.get("group_role")
    if group_role is not None and not isinstance(group_role, str):
        raise doc.error(("group_role",), f"must be a string, got {group_role!r}")
    callback_url = data.get("callback_url")
    if callback_url is not None and not (isinstance(callback_url, str) and CALLBACK_URL.match(callback_url)):
        raise doc.error(("callback_url",), f"must be an http:// or https:// URL, got {callback_url!r}")
    secret_env = data.get("callback_secret_env", DEFAULT_SECRET_ENV)
    if not (isinstance(secret_env, str) and ENV_NAME.match(secret_env)):
        raise doc.error(("callback_secret_env",), f"must name an environment variable, got {secret_env!r}")
    retries = data.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        raise doc.error(("retries",), f"must be a non-negative integer, got {retries!r}")
    lifetime_s = _duration(doc, ("lifetime",), data["lifetime"])
    max_runtime_s = None
    if "max_runtime" in data:
        if not flags["job"]:
            raise doc.error(("max_runtime",), "only a job type (job: true) has a max_runtime")
        max_runtime_s = _duration(doc, ("max_runtime",), data["max_runtime"])
        # A job past its max_runtime times out as past its lifetime, and a job's timeout fails it.
        lifetime_s = min(lifetime_s, max_runtime_s)
    ticket_type = TicketType(
        metaservice=metaservice, name=path.stem, states=states, transitions=transitions, initial=initial,
        lifetime_s=lifetime_s, retries=retries, max_runtime_s=max_runtime_s,
        notification_frequency_s=_duration(doc, ("notification_frequency",), data["notification_frequency"]),
        retention_s=_duration(doc, ("retention",), data["retention"]),
        group_role=group_role, description=str(data.get("description", "")), path=path, on_timeout=on_timeout,
        on_retention=on_retention, callback_url=callback_url, callback_secret_env=secret_env, **flags,
    )
    for state in states.values():
        name = bot_name(metaservice, path.stem, state)
        if len(name.encode()) > MAX_BOT_NAME_BYTES:
            raise doc.error(("states",), f"bot name {name!r} is longer than {MAX_BOT_NAME_BYTES} bytes; "
                                         "shorten the names")
    return ticket_type


def _on_timeout(doc, section, states, transitions) -> dict:
    """`on_timeout: {1: 4}`: the next state a ticket whose lifetime runs out in state 1 takes."""
    section = _mapping(doc, ("on_timeout",), section)
    chosen = {}
    for state, target in section.items():
        keys = ("on_timeout", state)
        if state not in states or states[state].final:
            raise doc.error(keys, f"{state!r} is not a non-final state of this type")
        if target not in transitions.get(state, ()):
            raise doc.error(keys, f"state {target!r} is not a next state of state {state} "
                                  f"(next states: {', '.join(map(str, transitions[state]))})")
        chosen[state] = target
    return chosen


# -- bots -------------------------------------------------------------------------------------


def _load_bots(root, types, bot_defaults, fleet_doc, heartbeat_interval_s) -> dict:
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
        bots[name] = _parse_bot(found[name], ticket_type, state, bot_defaults, fleet_doc, heartbeat_interval_s)
    return bots


def _positive_int(doc, key, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise doc.error((key,), f"must be a positive integer, got {value!r}")
    return value


def _parse_bot(path, ticket_type, state, bot_defaults, fleet_doc, heartbeat_interval_s) -> BotSpec:
    doc = yamlfile.load(path)
    data = _mapping(doc, (), doc.data)
    _unknown_keys(doc, (), data, BOT_KEYS)
    merged = {**BOT_DEFAULTS, **bot_defaults, **data}

    def where(key):
        """The file and keys a setting was written at: the bot file, else fleet.yaml's bot_defaults."""
        return (doc, (key,)) if key in data or key not in bot_defaults else (fleet_doc, ("bot_defaults", key))

    def refuse(key, message):
        source, keys = where(key)
        return source.error(keys, message)

    def duration(key):
        return _duration(*where(key), merged[key])

    def positive_int(key):
        value = merged[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise refuse(key, f"must be a positive integer, got {value!r}")
        return value

    work = _external_work(doc, data, ticket_type, state)
    handler = merged.get("handler")
    if work is not None and handler is not None:
        raise refuse("handler", "a state worked by external workers (worker: external) has no handler")
    if handler is None and not state.final and work is None:
        raise doc.error(("handler",), "missing: a bot of a non-final state needs handler: module:function")
    if handler is not None and (not isinstance(handler, str) or not re.match(r"^[\w.]+:[\w]+$", handler)):
        raise refuse("handler", f"must be module.path:function, got {handler!r}")
    retries = merged["retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise refuse("retries", f"must be a non-negative integer, got {retries!r}")
    # Heartbeats renew leases, and a dead owner's tickets are freed by liveness, not by the lease
    # running out; the lease only has to outlast a few late heartbeats.
    lease_s = LEASE_HEARTBEATS * heartbeat_interval_s if merged["lease"] is None else duration("lease")
    if lease_s < MIN_LEASE_HEARTBEATS * heartbeat_interval_s:
        raise refuse("lease", f"must be at least {MIN_LEASE_HEARTBEATS} heartbeat intervals "
                              f"({MIN_LEASE_HEARTBEATS * heartbeat_interval_s:g}s), got {merged['lease']!r}")
    return BotSpec(
        name=path.stem, metaservice=ticket_type.metaservice, ticket_type=ticket_type.name,
        state=state.code, state_name=state.name, final=state.final, handler=handler,
        threads=positive_int("threads"), sweep_interval_s=duration("sweep_interval"), lease_s=lease_s,
        batch_size=positive_int("batch_size"), retries=retries, retry_backoff_s=duration("retry_backoff"),
        replicas=positive_int("replicas"), stop_timeout_s=duration("stop_timeout"),
        handler_timeout_s=duration("handler_timeout"), path=path,
        stuck_after_s=None if merged["stuck_after"] is None else duration("stuck_after"), work=work,
    )


def _external_work(doc, data, ticket_type, state) -> ExternalWork | None:
    """`worker: external` and its settings; the settings without it are refused, naming the one found."""
    worker = data.get("worker")
    if worker is None:
        for key in WORKER_DEFAULTS:
            if key in data:
                raise doc.error((key,), f"{key} is a setting of a state worked by external workers: "
                                        f"add worker: external, or remove {key}")
        return None
    if worker != "external":
        raise doc.error(("worker",), f"must be external (tickets pulled by workers over HTTP), got {worker!r}")
    if state.final:
        raise doc.error(("worker",), f"state {state.code} ({state.name}) is final: no work is left for workers")
    if ticket_type.exclusive:  # workers outside the fleet cannot wait for the fleet to close for them
        raise doc.error(("worker",), f"{ticket_type.metaservice}/{ticket_type.name} is exclusive: its states "
                                     f"are worked by the fleet's own bots, not external workers")
    merged = {**WORKER_DEFAULTS, **data}
    progress = merged["progress"]
    if not isinstance(progress, list):
        raise doc.error(("progress",), f"must be a list of progress messages, got {progress!r}")
    for i, message in enumerate(progress):
        if not isinstance(message, str) or not re.match(PROGRESS_MESSAGE, message):
            raise doc.error(("progress", i), f"must be a name of letters, digits, '_', '.' or '-', got {message!r}")
        if message in progress[:i]:
            raise doc.error(("progress", i), f"{message!r} is listed twice")
    failure_state = merged["failure_state"]
    if failure_state is not None and (isinstance(failure_state, bool) or not ticket_type.allows(state.code, failure_state)):
        allowed = ", ".join(str(c) for c in ticket_type.next_states(state.code)) or "none"
        raise doc.error(("failure_state",), f"must be a state that {state.code} ({state.name}) may go to "
                                            f"(allowed: {allowed}), got {failure_state!r}")
    return ExternalWork(progress=tuple(progress), stall_timeout_s=_duration(doc, ("stall_timeout",), merged["stall_timeout"]),
                        max_attempts=_positive_int(doc, "max_attempts", merged["max_attempts"]),
                        failure_state=failure_state)
