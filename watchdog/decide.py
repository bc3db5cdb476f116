"""What the watchdog concludes about a bot, and what it does: one pure function, table-tested.

Inputs are plain values: what supervisord says about each process of the bot, the heartbeats the
bot's processes wrote to the database, the time, and the watchdog's memory of retries. The output
is the bot's health with a reason a person can act on, the actions to take, and the new memory.
"""

from dataclasses import dataclass, field

# Worst first: a bot's health is the worst of its processes'.
HEALTH_ORDER = ("missing", "fatal", "hung", "dead", "stopped", "unknown", "starting", "healthy", "disabled")


@dataclass(frozen=True)
class Process:
    """One process as supervisord sees it."""

    name: str  # supervisord's process name: the bot name, or bot-N for replicas
    state: str  # RUNNING, STARTING, BACKOFF, STOPPED, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int
    started_at: float  # unix time supervisord started it
    stopped_at: float = 0.0  # unix time it last stopped or exited (0: never)


@dataclass(frozen=True)
class Heartbeat:
    """A live registration of one bot process on this host (bot_processes)."""

    pid: int
    heartbeat_at: float  # unix time


@dataclass(frozen=True)
class Limits:
    hung_after_s: float  # heartbeat older than this while RUNNING: hung
    start_grace_s: float  # a freshly started process has this long before it must heartbeat
    fatal_backoff_s: float
    fatal_backoff_max_s: float
    # After the watchdog regains a lost database, bots need their own reconnect backoff before
    # they can heartbeat again: stale heartbeats say nothing about them until this has passed.
    reconnect_grace_s: float = 0.0


@dataclass(frozen=True)
class Retry:
    """The watchdog's memory of restarting a FATAL process."""

    attempts: int
    next_at: float


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


def decide(bot: str, *, enabled: bool, replicas: int, processes, heartbeats, now: float, limits: Limits,
           retries: dict, database_back_at: float = 0.0) -> Verdict:
    """The verdict on one bot. `processes` is None when supervisord does not answer;
    `database_back_at` is when the watchdog last regained the database after losing it."""
    if not enabled:
        return Verdict(bot, "disabled", "disabled in the database (botfleet bot enable to resume)",
                       retries=dict(retries))
    if processes is None:
        fresh = [h for h in heartbeats if now - h.heartbeat_at <= limits.hung_after_s]
        if len(fresh) >= replicas:
            return Verdict(bot, "healthy", "heartbeats fresh (supervisord not reachable)")
        return Verdict(bot, "unknown", f"supervisord not reachable; {len(fresh)} of {replicas} process(es) heartbeating")
    if not processes:
        return Verdict(bot, "missing", "supervisord does not know this bot: run `botfleet supervisor render` "
                                       "and `supervisorctl update`")
    by_pid = {h.pid: h for h in heartbeats}
    results = [_process(p, by_pid.get(p.pid), now, limits, retries.get(p.name), database_back_at)
               for p in processes]
    verdict = Verdict(bot, "healthy", "")
    for process, (health, reason, action, retry) in zip(processes, results, strict=True):
        if action:
            verdict.actions.append(action)
        if retry:
            verdict.retries[process.name] = retry
        if HEALTH_ORDER.index(health) < HEALTH_ORDER.index(verdict.health):
            verdict.health, verdict.reason = health, reason
    if verdict.health == "healthy":
        verdict.reason = f"{len(processes)} process(es) running, heartbeats fresh"
    if len(processes) < replicas and verdict.health in ("healthy", "starting"):
        verdict.health, verdict.reason = "missing", f"{len(processes)} of {replicas} replicas configured in supervisord"
    return verdict


def _process(process: Process, heartbeat, now, limits, retry, database_back_at):
    """(health, reason, action or None, Retry to remember or None) for one process."""
    name = process.name
    if process.state == "RUNNING":
        age_s = now - heartbeat.heartbeat_at if heartbeat else None
        if age_s is not None and age_s <= limits.hung_after_s:
            return "healthy", "", None, None
        # The grace covers start-up until the first heartbeat; once registered, silence is a hang.
        if heartbeat is None and now - process.started_at < limits.start_grace_s + limits.hung_after_s:
            return "starting", f"{name} started {now - process.started_at:.1f}s ago, not registered yet", None, None
        if now - database_back_at < limits.reconnect_grace_s + limits.hung_after_s:
            return ("starting", f"{name} has not heartbeated since the database came back "
                                f"{now - database_back_at:.1f}s ago; waiting for it to reconnect", None, None)
        detail = (f"no heartbeat for {age_s:.1f}s (pid {process.pid})" if age_s is not None
                  else f"never registered (pid {process.pid}, running {now - process.started_at:.0f}s)")
        return "hung", f"{name} hung: {detail}", Action("kill", name, "hung", detail), None
    if process.state in ("STARTING", "BACKOFF"):
        if retry:  # still fatal until a retry gets it running: don't let a retry hide the failure
            return "fatal", f"{name} went FATAL; the watchdog's start attempt {retry.attempts} is {process.state}", None, retry
        return "starting", f"{name} is {process.state} in supervisord", None, None
    if process.state == "FATAL":
        retry = retry or Retry(attempts=0, next_at=now)
        if now < retry.next_at:
            wait_s = retry.next_at - now
            return "fatal", f"{name} is FATAL; retry {retry.attempts + 1} in {wait_s:.0f}s", None, retry
        backoff_s = min(limits.fatal_backoff_max_s, limits.fatal_backoff_s * 2 ** retry.attempts)
        detail = f"FATAL in supervisord; start attempt {retry.attempts + 1}, next in {backoff_s:.0f}s if it fails"
        return ("fatal", f"{name} is FATAL (gave up by supervisord); starting it again",
                Action("start", name, "fatal", detail), Retry(retry.attempts + 1, now + backoff_s))
    if process.state == "EXITED":
        exited_s = now - process.stopped_at
        if exited_s < limits.hung_after_s:
            # autorestart=true: supervisord starts it again on its next turn; starting it too would
            # only race supervisord and record a restart that did not happen.
            return "dead", f"{name} exited {exited_s:.1f}s ago; supervisord restarts it", None, None
        return ("dead", f"{name} exited {exited_s:.0f}s ago and was not restarted",
                Action("start", name, "exited", f"EXITED in supervisord for {exited_s:.0f}s"), None)
    if process.state in ("STOPPED", "STOPPING"):
        return "stopped", f"{name} was stopped through supervisord (left alone)", None, None
    return "unknown", f"{name} is {process.state} in supervisord", None, retry
