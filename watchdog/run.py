"""The watchdog process: check every bot, act through supervisord, serve /metrics and /healthz.

Each check: read the bots and the heartbeats of this host's bot processes from the database, ask
this host's supervisord for its processes, let decide() judge every bot, carry out its actions
through XML-RPC, record every action and every change of health as an event, then heartbeat.
Several watchdogs (one per host) may run; each acts only on its own supervisord, and only the
holder of the fleet-wide lease does fleet-wide duties.
"""

import logging
import os
import signal
import threading
import time
import xmlrpc.client
from collections import deque
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.config.names import hostname, process_names
from common.errors import BotfleetError, SchemaBehindError
from common.fleet import stats_history, supervisor
from common.store import sql
from common.store.connect import close_quietly, connect
from common.store.connections import fleet_need
from common.store.reconnect import RECONNECT_BACKOFF_MAX_S, Backoff
from common.store.revision import check_schema
from watchdog import health
from watchdog.budget import ConnectionBudgetWatch
from watchdog.collector import FleetCollector, registry_for
from watchdog.decide import (
    Heartbeat,
    Limits,
    Process,
    Verdict,
    decide,
    restart_backoff,
    start_grace_s,
    waiting_tickets,
)
from watchdog.http_session import SharedConnection
from watchdog.retire import Retirements
from watchdog.time_limits import PROBE_TIMEOUTS, check_timeouts, rpc_timeout_s

log = logging.getLogger("botfleet.watchdog")

SCHEMA_RETRY_MAX_S = 30.0  # a schema the watchdog cannot use is looked at again this often, at least
HOUSEKEEPING_EVERY_S = 60.0  # pruning and forgetting: a minute late costs nothing
# A statement that gave up (a lock held past lock_timeout, a statement past statement_timeout): the session
# is fine, and what it was for waits for a later check. Not a lost database, which would drop the connection
# and give every bot the grace of a reconnect.
GAVE_UP = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)
STARTS_KEPT = 20  # the start grace follows the slowest of this many recent starts seen on this host
# supervisord's socket refuses or is gone: no supervisord runs there (killed, crashed), not one that is slow.
NOT_RUNNING = (ConnectionRefusedError, FileNotFoundError)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pid) -> float | None:
    """The CPU time (user and system) a process has used so far, from /proc; None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15
    except (OSError, IndexError, ValueError):
        return None


class TimedConnection:
    """The check loop's connection, timing each statement of the watchdog's own. One that waited longer than
    `limit_s` (a bot's heartbeat interval) means the database held statements up, the bots' heartbeats as
    much as the watchdog's: a frozen or stalled server, not silent bots. `on_stall` hears of it, also when
    the statement failed (a statement_timeout that fired as the server thawed)."""

    def __init__(self, conn, limit_s: float, on_stall):
        self._conn, self._limit_s, self._on_stall = conn, limit_s, on_stall

    def execute(self, query, params=None):
        started = time.monotonic()
        try:
            return self._conn.execute(query, params)
        finally:
            waited_s = time.monotonic() - started
            if waited_s > self._limit_s:
                self._on_stall(waited_s)


class Watchdog:
    def __init__(self, config, url, supervisor_socket):
        self.config = config
        self.settings = config.local_watchdog()  # this host's listen address, if `hosts:` gives it one
        self.url = url
        self.socket = supervisor_socket
        self.host = hostname()
        self.name = f"{self.host}:{os.getpid()}"
        self.stopping = threading.Event()
        self.retries = {}  # bot -> {process: Retry}
        self.pids = {}  # supervisord process name -> the last pid seen running it
        self.restarted = set()  # process names this watchdog restarted, whose new pid is not news
        self.is_leader = False
        self.conn = None
        self.timeouts = check_timeouts(self.settings)
        self.rpc_timeout_s = rpc_timeout_s(self.settings)
        self.retirements = Retirements(self.host)
        self.limits = Limits(
            hung_after_s=config.hung_after_s,
            start_grace_s=self.settings.start_grace_s,  # adapted to the starts seen here, at each check
            fatal_backoff_s=self.settings.fatal_retry_backoff_s,
            fatal_backoff_max_s=self.settings.fatal_retry_backoff_max_s,
            restart_backoff_s=self.settings.restart_backoff_s,
            restart_backoff_max_s=self.settings.restart_backoff_max_s,
            # A bot may retry up to its longest reconnect delay after the server is back, then it
            # connects, checks the schema and heartbeats on a host busy with every other bot doing
            # the same: twice that delay, plus a heartbeat, before silence counts again.
            reconnect_grace_s=2 * RECONNECT_BACKOFF_MAX_S + config.heartbeat_interval_s,
            stalled_after_s=self.settings.stalled_after_s,
        )
        # A statement of the watchdog's that waits longer than a heartbeat interval is the database holding
        # everyone up. A freeze long enough to make bots look hung (their silence past the hung threshold) holds
        # the watchdog's next check for nearly as long, more than a heartbeat interval while check_interval stays
        # under the hung threshold less two heartbeat intervals (2 s against 5 s as shipped).
        self.stall_limit_s = config.heartbeat_interval_s
        self.database_lost = False
        self.next_housekeeping_mono = 0.0  # the first check does it
        self.database_back_at = 0.0  # unix time the watchdog regained a database it had lost
        self.database_stalled_at = 0.0  # unix time a statement of its own came back after a stall
        self.stalls = {}  # bot -> Stall: its progress as of the last check
        # The bots whose stalls are judged: those that run handlers on tickets of their state. Not duties, final
        # states or states worked outside the fleet, whose due tickets wait for something else; nor exclusive
        # types, whose due ticket waits for the rest of the fleet's work to end.
        local = config.local_bots(self.host)
        self.handler_bots = sorted(
            name for name, spec in local.items()
            if not (spec.final or spec.duty or spec.external
                    or config.ticket_type(spec.metaservice, spec.ticket_type).exclusive))
        self.threads = {name: local[name].threads for name in self.handler_bots}
        self.lease_max_s = max((local[name].lease_s for name in self.handler_bots), default=0.0)
        self.starts_s = deque(maxlen=STARTS_KEPT)  # recent starts seen here: its own, and registrations
        self.first_check = True
        self.unregistered = {}  # supervisord process name -> the pid last seen RUNNING and not registered yet
        self.cpu_seen = {}  # supervisord process name -> (pid, CPU s, unix time that grew last) while not registered
        self.supervisor_error = None  # why this host's supervisord did not answer the last check
        self.connections = ConnectionBudgetWatch(fleet_need(config, self.host))  # reported, never acted on

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        server = self._serve_http()
        log.info("watchdog %s serving /metrics and /healthz on %s", self.name, self.settings.listen)
        backoff = Backoff()
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.check_once()
                    backoff.reset()
                except GAVE_UP as exc:
                    log.warning("check cut short, the next one tries again: %s", _first_line(exc))
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    delay_s = backoff.next_s()
                    log.warning("database unavailable (%s); retrying in %.1fs", str(exc).strip(), delay_s)
                    self.database_lost = True
                    self._drop_connection()
                    self.stopping.wait(delay_s)
                    continue
                except SchemaBehindError as exc:
                    # Restarting would not help: report it (/healthz and `botfleet check` say the same)
                    # and look again, until someone upgrades the schema or botfleet.
                    delay_s = min(backoff.next_s() * 10, SCHEMA_RETRY_MAX_S)
                    log.error("cannot use this database: %s; checking again in %.0fs", exc, delay_s)
                    self._drop_connection()
                    self.stopping.wait(delay_s)
                    continue
                self.stopping.wait(max(0.0, self.settings.check_interval_s - (time.monotonic() - started)))
        finally:
            server.shutdown()
            self._drop_connection()
        return 0

    def stop(self):
        self.stopping.set()

    def install_signal_handlers(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def check_once(self):
        conn = TimedConnection(self._connection(), self.stall_limit_s, self._database_stalled)
        self.is_leader = conn.execute(sql.TAKE_FLEET_LEASE, {"holder": self.name,
                                                             "lease_s": self.settings.lease_s}).fetchone() is not None
        # Heartbeat before the bots' health rows, so that when this loop stops its own heartbeat
        # goes stale first and `check` blames the watchdog, not every bot it no longer checks.
        conn.execute(sql.WATCHDOG_HEARTBEAT, {"name": self.name, "host": self.host, "pid": os.getpid()})
        bots = conn.execute(sql.WATCHDOG_BOTS, {"host": self.host, "handler_bots": self.handler_bots,
                                                "lease_max_s": self.lease_max_s}).fetchall()
        infos = self._supervisor_processes()
        now = time.time()
        self._note_own_start(infos, now)
        limits = self._limits()
        verdicts = []
        for bot in bots:
            try:
                verdicts.append(self._check_bot(conn, bot, infos, now, limits))
            except GAVE_UP as exc:  # a row of this bot's held by another session: the others are still checked
                log.warning("bot %s: not judged at this check: %s", bot["name"], _first_line(exc))
        backoffs = [restart_backoff(v.retries, now) for v in verdicts]
        conn.execute(sql.SET_BOTS_HEALTH, {"host": self.host, "names": [v.bot for v in verdicts],
                                           "healths": [v.health for v in verdicts],
                                           "reasons": [v.reason for v in verdicts],
                                           "restarts": [attempts for attempts, _ in backoffs],
                                           "backoffs_s": [None if until is None else until - now
                                                          for _, until in backoffs]})
        if time.monotonic() >= self.next_housekeeping_mono:
            self._housekeeping(conn, bots)
        conn.execute(sql.WATCHDOG_CHECKED, {"name": self.name, "supervisor_error": self.supervisor_error})
        self.connections.check(conn)

    def _limits(self) -> Limits:
        """This check's limits: the start grace as the starts seen on this host have it now."""
        grace_s = start_grace_s(self.settings.start_grace_s, self.starts_s, self.settings.restart_backoff_max_s)
        if grace_s != self.limits.start_grace_s:
            log.info("start grace on %s is %.1fs (configured %gs; the slowest of the last %d starts seen here took "
                     "%.1fs)", self.host, grace_s, self.settings.start_grace_s, len(self.starts_s),
                     max(self.starts_s, default=0.0))
            self.limits = replace(self.limits, start_grace_s=grace_s)
        return self.limits

    def _database_stalled(self, waited_s):
        if time.time() - self.database_stalled_at > self.limits.hung_after_s:  # said once per stall
            log.warning("a statement of the watchdog's waited %.1fs: the database held everyone's statements, the "
                        "bots' heartbeats too; their silence until now is not held against them", waited_s)
        self.database_stalled_at = time.time()

    def _note_own_start(self, infos, now):
        """The watchdog's own start, from supervisord starting it to its first check: the first start it sees on
        this host, while every bot may still be starting beside it under the same load."""
        first, self.first_check = self.first_check, False
        if not first or not infos:
            return
        own = next((info for info in infos.values() if info["pid"] == os.getpid()), None)
        if own is not None:
            self.starts_s.append(now - float(own["start"]))

    def _housekeeping(self, conn, bots):
        """What no check needs at once: verdicts of bots moved off this host, the minute's snapshot of the bots'
        stats for the console, and (the leader's) registrations dead for ten hung thresholds, month-old events,
        replaced watchdogs. Once a minute, not every check: an idle fleet's watchdog should cost its checks and
        nothing more."""
        self.next_housekeeping_mono = time.monotonic() + HOUSEKEEPING_EVERY_S
        conn.execute(sql.FORGET_OTHER_HEALTH, {"host": self.host, "names": [bot["name"] for bot in bots]})
        # Every watchdog, not only the leader: the snapshot is keyed by the minute, so a second writer in the same
        # minute writes nothing, and a minute the leader's housekeeping skips (its period is a minute plus a check)
        # or loses to a lease changing hands is written by another host.
        stats_history.snapshot(conn)
        if self.is_leader:
            conn.execute(sql.RETIRE_DEAD_PROCESSES, {"dead_after_s": 10 * self.limits.hung_after_s})
            conn.execute(sql.PRUNE_WATCHDOG_EVENTS)
            conn.execute(sql.PRUNE_WATCHDOGS)

    def _check_bot(self, conn, bot, infos, now, limits) -> Verdict:
        names = process_names(bot["name"], bot["replicas"])
        heartbeats = [Heartbeat(pid, now - age_s, processed) for pid, age_s, processed
                      in zip(bot["pids"], bot["ages_s"], bot["processed"], strict=True)]
        processes = None if infos is None else [
            Process(name, infos[name]["statename"], infos[name]["pid"], float(infos[name]["start"]),
                    float(infos[name]["stop"]),
                    busy=infos[name]["pid"] not in bot["pids"] and self._busy(name, infos[name]["pid"], now))
            for name in names if name in infos]
        waiting = None if bot["claimable"] is None else waiting_tickets(
            bot["claimable"], bot["in_hand"], self.threads[bot["name"]], len(bot["owners"]))
        verdict = decide(bot["name"], enabled=bot["enabled"], replicas=bot["replicas"], processes=processes,
                         heartbeats=heartbeats, now=now, limits=limits,
                         retries=self.retries.get(bot["name"], {}), database_back_at=self.database_back_at,
                         database_stalled_at=self.database_stalled_at, waiting=waiting,
                         stall=self.stalls.get(bot["name"]))
        self.retries[bot["name"]] = verdict.retries
        self.stalls[bot["name"]] = verdict.stall
        if processes:
            self._note_registrations(processes, {h.pid for h in heartbeats}, now)
            self._note_restarts(conn, bot["name"], processes)
            running = {process.pid for process in processes if process.pid}
            self.retirements.retire(conn, bot["name"], [pid for pid in bot["pids"] if pid not in running])
        for action in verdict.actions:
            self._act(conn, bot["name"], infos[action.process]["group"], action)
        if verdict.health != bot["health"]:
            log.info("bot %s: %s -> %s (%s)", bot["name"], bot["health"], verdict.health, verdict.reason)
            self._record(conn, bot["name"], "health", f"{bot['health'] or 'unknown'} -> {verdict.health}: {verdict.reason}")
        return verdict

    def _busy(self, name, pid, now) -> bool:
        """Whether a process not registered yet has used CPU within the last hung threshold: still starting."""
        used_s = cpu_s(pid) if pid else None
        seen = self.cpu_seen.get(name)
        if used_s is None:
            self.cpu_seen.pop(name, None)
            return False
        same = seen is not None and seen[0] == pid
        grew_at = now if same and used_s > seen[1] else (seen[2] if same else 0.0)  # first sight proves nothing
        self.cpu_seen[name] = (pid, used_s, grew_at)
        return now - grew_at < self.limits.hung_after_s

    def _note_registrations(self, processes, registered_pids, now):
        """How long the starts this watchdog saw took, from supervisord starting a process to the first check
        that found it registered: what the start grace follows."""
        for process in processes:
            if process.state != "RUNNING" or not process.pid:
                continue
            if process.pid not in registered_pids:
                self.unregistered[process.name] = process.pid
            elif self.unregistered.pop(process.name, None) == process.pid:
                self.starts_s.append(now - process.started_at)

    def _note_restarts(self, conn, bot, processes):
        """Count every restart seen, whoever made it, by its reason. A new pid this watchdog did not cause
        followed either a clean stop (the process ended its registration itself: an operator's `supervisorctl
        restart`, stop and start, `bot disable` and `enable`) or a death (a crash, a kill -9: its registration
        was left live), and supervisord started it again."""
        for process in processes:
            seen = self.pids.get(process.name)
            if not process.pid:
                continue
            if seen and process.pid != seen:
                if process.name in self.restarted:
                    self.restarted.discard(process.name)
                else:
                    previous = conn.execute(sql.PREVIOUS_REGISTRATION, {"bot": bot, "host": self.host,
                                                                        "pid": seen}).fetchone()
                    if previous and previous["deregistered"]:
                        reason = f"operator: {process.name} was stopped cleanly and started again"
                    else:
                        reason = f"crash: {process.name} died and supervisord restarted it"
                    self._record(conn, bot, "restart", f"{reason} (pid {seen} -> {process.pid})")
            self.pids[process.name] = process.pid

    def _act(self, conn, bot, group, action):
        target = f"{group}:{action.process}"
        log.warning("bot %s: %s %s (%s: %s)", bot, action.kind, target, action.reason, action.detail)
        try:
            rpc = supervisor.client(self.socket, self.rpc_timeout_s).supervisor
            if action.kind == "kill":
                # A hung process may not react to TERM (SIGSTOP, a stuck thread); it holds nothing
                # that a lease does not protect, so it is killed and supervisord starts it again.
                rpc.signalProcess(target, "KILL")
            else:
                rpc.startProcess(target, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" in fault.faultString:  # supervisord restarted it first: nothing to do
                return
            self._record(conn, bot, "alert", f"{action.reason}: could not {action.kind} {target}: {fault}")
            return
        except (OSError, xmlrpc.client.Error) as exc:
            self._record(conn, bot, "alert", f"{action.reason}: could not {action.kind} {target}: {exc}")
            return
        self.restarted.add(action.process)
        self._record(conn, bot, "restart", f"{action.reason}: {action.detail}")

    def _record(self, conn, bot, action, reason):
        conn.execute(sql.RECORD_WATCHDOG_EVENT, {"watchdog": self.name, "bot": bot, "action": action,
                                                 "reason": reason})

    def _supervisor_processes(self):
        """This host's supervisord's processes, or None when it does not answer; why not, in supervisor_error,
        which `botfleet check` reports: the bots and this watchdog live on after a kill -9 of their supervisord,
        heartbeating as ever, and nothing but this call tells."""
        try:
            infos = supervisor.client(self.socket, self.rpc_timeout_s).supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error) as exc:
            log.warning("supervisord not reachable at %s: %s", self.socket, exc)
            self.supervisor_error = (
                f"supervisord is not running (nothing answers at {self.socket}: {exc}): this host's bots run on "
                f"with nothing to restart them; stop them (`botfleet down`) and start the fleet again (`botfleet up`)"
                if isinstance(exc, NOT_RUNNING) else
                f"supervisord is not answering at {self.socket} ({exc}): nothing restarts this host's processes")
            return None
        self.supervisor_error = None
        return {info["name"]: info for info in infos}

    # -- connections and HTTP -------------------------------------------------------------------
    def _connection(self):
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.url, autocommit=True, application_name="botfleet-watchdog", timeouts=self.timeouts)
            try:
                check_schema(self.conn)
            except SchemaBehindError:
                self._drop_connection()
                raise
            if self.database_lost:
                # The bots lost it too: their stale heartbeats mean nothing until they had time to reconnect.
                self.database_lost = False
                self.database_back_at = time.time()
                log.info("database is back; bots get %.1fs to reconnect before any is judged hung",
                         self.limits.reconnect_grace_s + self.limits.hung_after_s)
        return self.conn

    def _drop_connection(self):
        close_quietly(self.conn)
        self.conn = None

    def _serve_http(self):
        shared = SharedConnection(self.url, "botfleet-watchdog:http", PROBE_TIMEOUTS)
        registry = registry_for(FleetCollector(shared.session, leader=lambda: self.is_leader,
                                                  stale_after_s=self.settings.stale_after_s,
                                                  fleet_need=self.connections.need))
        watchdog = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/metrics"):
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif self.path.startswith("/healthz"):
                    code, line = health.check(watchdog.url, watchdog.settings, shared.session)
                    self._send(200 if code == health.OK else 503, "text/plain; charset=utf-8", (line + "\n").encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

            def _send(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass  # scrapes every few seconds would drown the log

        try:
            server = ThreadingHTTPServer((self.settings.host, self.settings.port), Handler)
        except OSError as exc:
            raise BotfleetError(f"watchdog cannot listen on {self.settings.listen} (watchdog.listen in "
                                f"fleet.yaml): {exc.strerror}") from None
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="watchdog-http", daemon=True).start()
        return server


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
