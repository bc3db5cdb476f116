"""What the watchdog concludes about a bot, and what it does: pure functions, table-tested.

Inputs are plain values: what supervisord says about each process of the bot, the heartbeats the
bot's processes wrote to the database, the time, how much of the bot's work waits, and the watchdog's
memory of its restarts and of the bot's progress. The output is the bot's health with a reason a person
can act on, the actions to take, and the new memory.
"""

from dataclasses import dataclass, field, replace

# Worst first: a bot's health is the worst of its processes'. Stalled is judged only for a bot whose
# processes are all healthy, so it sits just above them.
HEALTH_ORDER = ("missing", "fatal", "hung", "dead", "stopped", "unknown", "stalled", "starting", "healthy", "disabled")
# The restarts whose memory says "this process went FATAL": reported fatal until it runs again.
FATAL = "fatal"


@dataclass(frozen=True)
class Process:
    """One process as supervisord sees it."""

    name: str  # supervisord's process name: the bot name, or bot-N for replicas
    state: str  # RUNNING, STARTING, BACKOFF, STOPPED, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int
    started_at: float  # unix time supervisord started it
    stopped_at: float = 0.0  # unix time it last stopped or exited (0: never)
    busy: bool = False  # it used CPU within the last hung threshold (read only for a process not registered yet)


@dataclass(frozen=True)
class Heartbeat:
    """A live registration of one bot process on this host (bot_processes)."""

    pid: int
    heartbeat_at: float  # unix time
    processed: int = 0  # steps the process has written since it started, as of its last heartbeat


@dataclass(frozen=True)
class Limits:
    hung_after_s: float  # heartbeat older than this while RUNNING: hung
    start_grace_s: float  # a freshly started process has this long (plus hung_after_s) to register
    fatal_backoff_s: float  # after a start of a FATAL process, the next waits this long, doubling...
    fatal_backoff_max_s: float  # ...up to this
    restart_backoff_s: float = 10.0  # the same for the restarts of a hung or exited process
    restart_backoff_max_s: float = 300.0
    # After the watchdog regains a lost database, bots need their own reconnect backoff before
    # they can heartbeat again: stale heartbeats say nothing about them until this has passed.
    reconnect_grace_s: float = 0.0
    # Work waiting this long while none of the bot's processes writes a step: stalled.
    stalled_after_s: float = float("inf")

    def backoff_s(self, reason: str, attempts: int) -> float:
        """How long after the `attempts`-th restart in a row (1: the first) the next may come."""
        base_s, max_s = ((self.fatal_backoff_s, self.fatal_backoff_max_s) if reason == FATAL
                         else (self.restart_backoff_s, self.restart_backoff_max_s))
        return min(max_s, base_s * 2 ** (attempts - 1))


@dataclass(frozen=True)
class Retry:
    """The watchdog's memory of restarting one process: how many restarts in a row, and when the next may come.

    Forgotten once the process has run healthy for restart_backoff_max_s: a process that dies or hangs again
    soon after each restart is restarted less and less often, up to the ceiling, instead of in a loop."""

    attempts: int
    next_at: float
    reason: str = FATAL  # of the last restart: fatal, hung or exited
    healthy_since: float | None = None  # since when it has run healthy without a break, after that restart
    ran: bool = False  # it has run healthy since that restart


@dataclass(frozen=True)
class Stall:
    """The watchdog's memory of a bot's progress on this host: each process's `processed` at the last check, and
    since when work has waited with no counter moving (None: no work waits)."""

    processed: dict  # pid -> steps written
    since: float | None = None


@dataclass(frozen=True)
class Action:
    kind: str  # "kill": SIGKILL, supervisord restarts it; "start": startProcess
    process: str
    reason: str  # hung | fatal | exited
    detail: str


@dataclass
class Verdict:
    bot: str
    health: str
    reason: str
    actions: list = field(default_factory=list)
    retries: dict = field(default_factory=dict)  # process name -> Retry, the watchdog's new memory
    stall: Stall | None = None  # the watchdog's new memory of the bot's progress


def decide(bot: str, *, enabled: bool, replicas: int, processes, heartbeats, now: float, limits: Limits,
           retries: dict, database_back_at: float = 0.0, database_stalled_at: float = 0.0,
           waiting: int | None = None, stall: Stall | None = None) -> Verdict:
    """The verdict on one bot. `processes` is None when supervisord does not answer; `database_back_at` is when
    the watchdog last regained the database after losing it, `database_stalled_at` when a statement of its own
    last came back after waiting far longer than a heartbeat; `waiting` is how many of the bot's tickets wait
    for a thread or a claim (None: not a bot that runs handlers)."""
    if not enabled:
        return Verdict(bot, "disabled", "disabled in the database (botfleet bot enable to resume)",
                       retries=dict(retries))
    progress = _progress(stall, heartbeats, waiting, now)
    if processes is None:
        fresh = [h for h in heartbeats if now - h.heartbeat_at <= limits.hung_after_s]
        if len(fresh) >= replicas:
            verdict = Verdict(bot, "healthy", "heartbeats fresh (supervisord not reachable)", stall=progress)
            return _stalled(verdict, progress, waiting, now, limits)
        return Verdict(bot, "unknown", f"supervisord not reachable; {len(fresh)} of {replicas} process(es) heartbeating",
                       stall=progress)
    if not processes:
        return Verdict(bot, "missing", "supervisord does not know this bot: run `botfleet supervisor render` "
                                       "and `supervisorctl update`", stall=progress)
    by_pid = {h.pid: h for h in heartbeats}
    excuse = _database_excuse(now, limits, database_back_at, database_stalled_at)
    results = [_process(p, by_pid.get(p.pid), now, limits, retries.get(p.name), excuse) for p in processes]
    verdict = Verdict(bot, "healthy", "", stall=progress)
    for process, (health, reason, action, retry) in zip(processes, results, strict=True):
        if action:
            verdict.actions.append(action)
        if retry:
            # Only an unbroken healthy stretch forgets the restarts: one that hangs now and then keeps them.
            keep = retry if health == "healthy" or retry.healthy_since is None else replace(retry, healthy_since=None)
            verdict.retries[process.name] = keep
        if HEALTH_ORDER.index(health) < HEALTH_ORDER.index(verdict.health):
            verdict.health, verdict.reason = health, reason
    if verdict.health == "healthy":
        verdict.reason = f"{len(processes)} process(es) running, heartbeats fresh"
    if len(processes) < replicas and verdict.health in ("healthy", "starting"):
        verdict.health, verdict.reason = "missing", f"{len(processes)} of {replicas} replicas configured in supervisord"
    return _stalled(verdict, progress, waiting, now, limits)


def waiting_tickets(claimable: int, in_hand: int, threads: int, processes: int) -> int:
    """The bot's tickets that wait for it: due and claimable, or claimed by its processes here beyond what their
    threads can run at once (a bot claims up to its batch_size, which may be more than its threads)."""
    return claimable + max(0, in_hand - threads * processes)


def start_grace_s(configured_s: float, starts_s, max_s: float) -> float:
    """The start grace on this host: the configured one, or twice the slowest of the recent starts the watchdog
    saw here (its own start, and processes from their start to their registration), whichever is longer, up to
    `max_s`. A host busy enough to slow every start slows them all alike: the starts it saw say how long the
    next one may take, where a fixed grace killed every start of a slow process as "never registered"."""
    return min(max(configured_s, max_s), max(configured_s, 2 * max(starts_s, default=0.0)))


def restart_backoff(retries: dict, now: float) -> tuple[int, float | None]:
    """(the most restarts in a row of a process of the bot, the time before which the watchdog restarts none of
    them again, or None): what `botfleet status` and the metrics show."""
    attempts = max((r.attempts for r in retries.values()), default=0)
    until = max((r.next_at for r in retries.values() if r.next_at > now), default=None)
    return attempts, until


def _process(process: Process, heartbeat, now, limits, retry, excuse):
    """(health, reason, action or None, Retry to remember or None) for one process."""
    name = process.name
    if process.state == "RUNNING":
        age_s = now - heartbeat.heartbeat_at if heartbeat else None
        if age_s is not None and age_s <= limits.hung_after_s:
            return "healthy", "", None, _settled(retry, now, limits)
        # The grace covers start-up until the first heartbeat; once registered, silence is a hang. Past it, a
        # process still using CPU is still starting, as slowly as a busy host lets it (up to the longest grace):
        # one that sits idle without registering is the one that hangs.
        started_s = now - process.started_at
        if heartbeat is None and started_s < _grace_s(limits, retry) + limits.hung_after_s:
            return "starting", f"{name} started {started_s:.1f}s ago, not registered yet", None, retry
        if heartbeat is None and process.busy and started_s < _longest_grace_s(limits) + limits.hung_after_s:
            return "starting", (f"{name} started {started_s:.0f}s ago, not registered yet, and still busy starting "
                                f"(it used CPU within {limits.hung_after_s:g}s)"), None, retry
        if excuse:
            return "starting", f"{name} {excuse}", None, retry
        detail = (f"no heartbeat for {age_s:.1f}s (pid {process.pid})" if age_s is not None
                  else f"never registered (pid {process.pid}, running {now - process.started_at:.0f}s)")
        return _restart(process, "hung", "kill", f"{name} hung: {detail}", detail, now, limits, retry)
    if process.state in ("STARTING", "BACKOFF"):
        if retry and retry.reason == FATAL and not retry.ran:
            # still fatal until a retry gets it running: don't let a retry hide the failure
            return "fatal", f"{name} went FATAL; the watchdog's start attempt {retry.attempts} is {process.state}", \
                None, retry
        return "starting", f"{name} is {process.state} in supervisord", None, retry
    if process.state == "FATAL":
        return _restart(process, FATAL, "start", f"{name} is FATAL (supervisord gave up on it)",
                        "FATAL in supervisord", now, limits, retry)
    if process.state == "EXITED":
        exited_s = now - process.stopped_at
        if exited_s < limits.hung_after_s:
            # autorestart=true: supervisord starts it again on its next turn; starting it too would
            # only race supervisord and record a restart that did not happen.
            return "dead", f"{name} exited {exited_s:.1f}s ago; supervisord restarts it", None, retry
        return _restart(process, "exited", "start", f"{name} exited {exited_s:.0f}s ago and was not restarted",
                        f"EXITED in supervisord for {exited_s:.0f}s", now, limits, retry)
    if process.state in ("STOPPED", "STOPPING"):
        return "stopped", f"{name} was stopped through supervisord (left alone)", None, retry
    return "unknown", f"{name} is {process.state} in supervisord", None, retry


def _grace_s(limits, retry) -> float:
    """The start grace of one process: each restart of it in a row doubles it (one killed for not registering in
    time gets longer the next time), up to the longest."""
    return min(limits.start_grace_s * 2 ** (retry.attempts if retry else 0), _longest_grace_s(limits))


def _longest_grace_s(limits) -> float:
    """However slow the host, a process that has not registered within this is killed: the longest backoff."""
    return max(limits.start_grace_s, limits.restart_backoff_max_s)


def _restart(process, reason, kind, what, detail, now, limits, retry):
    """Restart the process now, or, within the backoff of its last restart, say when it will be."""
    health = "hung" if reason == "hung" else ("fatal" if reason == FATAL else "dead")
    if retry and now < retry.next_at:
        return (health, f"{what}; restart {retry.attempts + 1} in a row backs off, in {retry.next_at - now:.0f}s",
                None, retry)
    attempts = (retry.attempts if retry else 0) + 1
    backoff_s = limits.backoff_s(reason, attempts)
    detail += f"; restart {attempts} in a row, the next not within {backoff_s:.0f}s"
    return health, what, Action(kind, process.name, reason, detail), Retry(attempts, now + backoff_s, reason)


def _settled(retry, now, limits):
    """The memory of a process found healthy: kept until it has run healthy for the longest backoff."""
    if retry is None:
        return None
    if retry.healthy_since is None:
        return replace(retry, healthy_since=now, ran=True)
    return None if now - retry.healthy_since >= limits.restart_backoff_max_s else retry


def _database_excuse(now, limits, database_back_at, database_stalled_at) -> str | None:
    """Why silence says nothing about the bot right now, if it does not: the database kept every process from
    writing. After an outage bots must reconnect first; after a stall (a frozen server, a storage hiccup) their
    connections are there and the next heartbeat goes out as the server answers again."""
    back_s = now - database_back_at
    if back_s < limits.reconnect_grace_s + limits.hung_after_s:
        return f"has not heartbeated since the database came back {back_s:.1f}s ago; waiting for it to reconnect"
    stalled_s = now - database_stalled_at
    if stalled_s < limits.hung_after_s:
        return (f"has not heartbeated since the database, which held the watchdog's own statements too, answered "
                f"again {stalled_s:.1f}s ago; waiting for its next heartbeat")
    return None


def _progress(stall: Stall | None, heartbeats, waiting, now) -> Stall | None:
    """The new memory of the bot's progress: a step written by any process (its `processed` grew) or no work
    waiting ends a stretch without progress; otherwise it goes on."""
    if waiting is None:
        return None
    counts = {h.pid: h.processed for h in heartbeats}
    if not waiting:
        return Stall(counts)
    moved = stall is None or any(n > stall.processed.get(pid, 0) for pid, n in counts.items())
    return Stall(counts, now if moved or stall.since is None else stall.since)


def _stalled(verdict: Verdict, progress: Stall | None, waiting, now, limits) -> Verdict:
    """A healthy bot that holds due work and has written no step for stalled_after_s is stalled: reported, not
    restarted. Its processes heartbeat, so its handlers are what holds it (runs still within handler_timeout,
    hung on something outside), and a restart would only run the same handlers on the same tickets again."""
    if verdict.health != "healthy" or progress is None or progress.since is None:
        return verdict
    quiet_s = now - progress.since
    if quiet_s >= limits.stalled_after_s:
        verdict.health = "stalled"
        verdict.reason = (f"{verdict.bot} stalled: {waiting} ticket(s) wait for it and no step written for "
                          f"{quiet_s:.0f}s, though its processes heartbeat (its threads are busy with handlers "
                          f"that do not finish; see its log)")
    return verdict
