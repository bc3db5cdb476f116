"""What a config folder says, as frozen values: ticket types, their states, bots and fleet settings."""

from dataclasses import dataclass, field, replace
from pathlib import Path

from common.config.names import hostname
from common.config.paths import FleetPaths
from common.errors import BotfleetError, ConfigError


@dataclass(frozen=True)
class State:
    code: int
    name: str
    description: str = ""
    final: bool = False
    outcome: str | None = None  # a job type's final state: succeeded or failed
    retention_s: float | None = None  # this state's own retention, instead of its type's


# A receiver of state changes: an http(s) URL the webhook bot can POST to (checked in YAML and by the API).
CALLBACK_URL_PATTERN = r"^https?://[^\s/?#]+(/\S*)?$"
# A prefix of `webhooks.allow`: a scheme, a host (and port) and at least the "/" after it, so that
# "https://hooks.example.org/" cannot be matched by https://hooks.example.org.evil.net/ or by a user part.
CALLBACK_PREFIX_PATTERN = r"^https?://[^\s/?#@]+/\S*$"
DEFAULT_SECRET_ENV = "BOTFLEET_WEBHOOK_SECRET"  # the variable holding the key webhooks are signed with

SUCCEEDED, FAILED = "succeeded", "failed"
OUTCOMES = (SUCCEEDED, FAILED)
# Seed 000: succeeded operations go after 24 hours, failed ones (and their logs) after 2 weeks.
JOB_RETENTION_S = {SUCCEEDED: 24 * 3600.0, FAILED: 14 * 86400.0}


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
    on_timeout: dict = field(default_factory=dict)  # state -> the next state a timed-out ticket takes
    on_retention: str = "delete"  # after retention, closed tickets are deleted, or archived with their events
    job: bool = False  # its tickets are jobs: listed by /operations, kept by their outcome's retention
    callback_url: str | None = None  # each state change of its tickets is POSTed here
    callback_secret_env: str = DEFAULT_SECRET_ENV  # the variable holding the key its webhooks are signed with
    retries: int | None = None  # its handlers' retries, instead of their bots' (a job type may say 0)
    max_runtime_s: float | None = None  # a job type's: a job not ended this long after it is due fails

    @property
    def key(self):
        return (self.metaservice, self.name)

    def next_states(self, code) -> tuple:
        """The normal next state first, then the alternates, in the order written."""
        return self.transitions.get(code, ())

    def allows(self, from_code, to_code) -> bool:
        return to_code in self.transitions.get(from_code, ())

    def retention_for(self, code) -> float:
        """How long a ticket closed in this state is kept: the state's own retention, else a job's outcome's
        (24 hours succeeded, 2 weeks failed), else the type's."""
        state = self.states.get(code)
        if state is not None and state.retention_s is not None:
            return state.retention_s
        if self.job and state is not None and state.outcome is not None:
            return JOB_RETENTION_S[state.outcome]
        return self.retention_s

    @property
    def failure_state(self) -> int | None:
        """A job type's final state with outcome failed: where a job whose handler failed for good ends."""
        return next((s.code for s in self.states.values() if s.outcome == FAILED), None) if self.job else None

    def outcome_of(self, code) -> str | None:
        state = self.states.get(code)
        return state.outcome if state is not None else None


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
    handler_timeout_s: float = 300.0  # a handler run longer than this is that step's failure
    stuck_after_s: float | None = None  # a ticket here longer (and not parked) raises one error ticket
    duty: str | None = None  # a built-in bot's work instead of a handler: mail, api, webhook or sweep
    path: Path | None = None
    work: "ExternalWork | None" = None  # `worker: external`: workers pull this state's tickets over HTTP

    @property
    def external(self) -> bool:
        return self.work is not None


@dataclass(frozen=True)
class ExternalWork:
    """`worker: external` in a bot file (seed 002): the state's tickets are pulled by workers over HTTP, and
    its bot is their controller: it takes back stalled tickets and fails those abandoned too often."""

    progress: tuple = ()  # the progress messages a worker may report, each recorded once per hold
    stall_timeout_s: float = 300.0  # a worker silent this long about its ticket loses it
    max_attempts: int = 3  # holds that ended without a finish; then the failure state, or one error ticket
    failure_state: int | None = None  # None: an exhausted ticket raises an error ticket


@dataclass(frozen=True)
class WatchdogSettings:
    listen: str
    check_interval_s: float
    hung_after_missed_heartbeats: int
    start_grace_s: float  # a new process has this long (plus hung_after) to register; none after
    fatal_retry_backoff_s: float
    fatal_retry_backoff_max_s: float
    lease_s: float  # the fleet-wide lease one watchdog holds
    stale_after_s: float = 5.0  # `botfleet check` and /healthz fail when no check completed for this long
    restart_backoff_s: float = 10.0  # after a restart of a hung or exited process, the next waits this long, doubling
    restart_backoff_max_s: float = 300.0  # ...up to this; forgotten once the process ran healthy this long
    stalled_after_s: float = 60.0  # due work waiting this long with no step written: the bot is stalled

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(listen: str) -> tuple[str, int]:
    """host:port (checked when the config is loaded) as (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class HostSpec:
    """A host of `hosts:` in fleet.yaml: the bots its supervisord runs, and where its watchdog listens."""

    name: str
    bots: frozenset  # bot names
    watchdog_listen: str | None = None  # None: watchdog.listen


@dataclass(frozen=True)
class MailSettings:
    """`mail:` of fleet.yaml: the SMTP server notifications are mailed through, and what happens to mail."""

    host: str
    port: int
    security: str  # none | starttls | tls
    username: str | None
    password_env: str | None  # the environment variable holding the password
    sender: str
    max_tries: int
    retry_backoff_s: float
    operators_group: str  # where one error ticket per undeliverable notification goes
    keep_delivered_s: float  # delivered notifications are removed after this
    stuck_after_s: float = 3600.0  # mail pending longer is reported to the operators, once
    timeout_s: float = 10.0  # per SMTP connect and answer; at most half the watchdog's hung threshold


@dataclass(frozen=True)
class WebhookSettings:
    """`webhooks:` of fleet.yaml: how the built-in bot botfleet-webhook-1-deliver POSTs state changes."""

    max_tries: int = 8
    retry_backoff_s: float = 1.0  # doubled after each failed try, up to max_backoff
    max_backoff_s: float = 300.0
    timeout_s: float = 2.0  # per request; at most half the watchdog's hung threshold
    keep_delivered_s: float = 86400.0
    keep_failed_s: float = 14 * 86400.0
    # URL prefixes a ticket's own callback_url (set over the API) must start with; none: no ticket may
    # set one. A type's callback_url is the config's own, and trusted.
    allow: tuple = ()

    def callback_refusal(self, url: str) -> str | None:
        """Why a ticket may not have `url` as its callback_url, or None when it may."""
        if not self.allow:
            return ("a ticket's own callback_url is refused: fleet.yaml allows none (list URL prefixes "
                    "under webhooks.allow)")
        path = url.split("?", 1)[0].split("#", 1)[0]
        if "/../" in path + "/" or "/./" in path + "/" or "\\" in url:  # a receiver could resolve these elsewhere
            return f"callback_url {url!r} has a dot segment or a backslash in its path"
        if not any(url.startswith(prefix) for prefix in self.allow):
            return f"callback_url {url!r} starts with none of webhooks.allow: {', '.join(self.allow)}"
        return None


JOB_STATUSES = ("pending", "in_progress", "completed", "failed")  # seed 004's words, for /job


@dataclass(frozen=True)
class JobsSettings:
    """`jobs:` of fleet.yaml: the job type behind POST /job and PATCH /job/{id}, and its statuses' states."""

    metaservice: str
    ticket_type: str
    statuses: dict  # job status -> state code

    def status_of(self, code) -> str | None:
        """The job status of a state (the first status mapped to it), None for a state without one."""
        return next((status for status, state in self.statuses.items() if state == code), None)


@dataclass(frozen=True)
class FleetConfig:
    root: Path
    database_url: str | None
    heartbeat_interval_s: float
    watchdog: WatchdogSettings
    api_listen: str
    metaservices: dict  # name -> settings mapping
    api_root_path: str = ""  # the prefix a reverse proxy serves the API under: the console's links carry it
    max_payload_bytes: int = 1024 * 1024  # a ticket's payload as UTF-8 JSON, checked wherever one is written
    types: dict = field(default_factory=dict)  # (metaservice, type) -> TicketType
    bots: dict = field(default_factory=dict)  # bot name -> BotSpec
    builtin_types: dict = field(default_factory=dict)  # (metaservice, type) -> botfleet's own types
    hosts: dict = field(default_factory=dict)  # host name -> HostSpec; empty: every bot on every host
    people: dict = field(default_factory=dict)  # {"users": {name: {email, window: (start, end), tz}}, "groups": ...}
    mail: MailSettings | None = None  # None: notifications are not mailed (the inbox has them all)
    jobs: JobsSettings | None = None  # None: no /job routes
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    sweep_every_s: float = 3600.0  # how often the JOBSWEEPER runs
    status_models: dict = field(default_factory=dict)  # object name -> StatusModel (config/status_models/)
    statusek_open_create: bool = False  # fleet.yaml's statusek: {open_create: true}: /statusek/ creates tokenless
    hosts_line: int | None = None  # where fleet.yaml says `hosts:`, for the error of a host it does not list

    @property
    def hung_after_s(self) -> float:
        """Silence after which a process counts as hung or dead: its missed heartbeats, in seconds."""
        return self.heartbeat_interval_s * self.watchdog.hung_after_missed_heartbeats

    def find_type(self, metaservice, name) -> TicketType | None:
        """A type of this config or a built-in one; None when there is none."""
        return self.types.get((metaservice, name)) or self.builtin_types.get((metaservice, name))

    def ticket_type(self, metaservice, name) -> TicketType:
        """A type of this config or a built-in one; an error naming it when there is none."""
        found = self.find_type(metaservice, name)
        if found is None:
            raise BotfleetError(f"unknown ticket type {metaservice}/{name}")
        return found

    def job_types(self) -> list[TicketType]:
        """The types whose tickets are jobs, botfleet's own (the JOBSWEEPER's) included, by key."""
        return sorted((k for k in {**self.builtin_types, **self.types}.values() if k.job), key=lambda k: k.key)

    def state_name(self, metaservice, ticket_type, code) -> str | None:
        """The name of a state, or None for a type or state this config does not know (any more)."""
        kind = self.find_type(metaservice, ticket_type)
        state = kind.states.get(code) if kind else None
        return state.name if state else None

    @property
    def paths(self) -> FleetPaths:
        return FleetPaths.of(self.root)

    def host(self, name=None) -> HostSpec | None:
        """This host's entry in `hosts:` (or the named host's); None when fleet.yaml has no `hosts:`."""
        name = name or hostname()
        if not self.hosts:
            return None
        try:
            return self.hosts[name]
        except KeyError:
            # A config error (exit 78): this machine's name and the config disagree, and nothing would run.
            raise ConfigError(self.root / "fleet.yaml", self.hosts_line, None,
                              f"host {name!r} is not listed under hosts: (listed: {', '.join(sorted(self.hosts))}); "
                              f"set BOTFLEET_HOST to the name this machine has there") from None

    def local_bots(self, host=None) -> dict:
        """bot name -> BotSpec of the bots this host (or the named one) runs."""
        entry = self.host(host)
        return dict(self.bots) if entry is None else {n: s for n, s in self.bots.items() if n in entry.bots}

    def hosts_of(self, bot_name) -> list[str] | None:
        """The hosts that run a bot, or None when every host runs every bot."""
        return sorted(h.name for h in self.hosts.values() if bot_name in h.bots) if self.hosts else None

    def local_watchdog(self, host=None) -> WatchdogSettings:
        """The watchdog settings of this host (or the named one): its own listen address if it has one."""
        entry = self.host(host)
        if entry is None or entry.watchdog_listen is None:
            return self.watchdog
        return replace(self.watchdog, listen=entry.watchdog_listen)

    def bot(self, name) -> BotSpec:
        try:
            return self.bots[name]
        except KeyError:
            known = ", ".join(sorted(self.bots)) or "none"
            raise ConfigError(self.root / "bots", None, None, f"no bot named {name!r} (known: {known})") from None

