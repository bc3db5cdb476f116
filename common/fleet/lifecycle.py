"""`botfleet up` and `botfleet down`: the database, the schema, the rendered config and supervisord.

start_supervisord() and wait_running() are also the fleet harness of the tests, the benchmark and
the chaos run, so they start fleets exactly as an operator's `botfleet up --daemon` does.
"""

import os
import signal
import subprocess
import sys
import time

from common.access.fleet_lock import read_lock, reset_lock
from common.config.handlers import check_handlers
from common.config.names import process_names
from common.errors import BotfleetError
from common.fleet import orphans, render, supervisor
from common.fleet.wait import wait_until
from common.store import connections, migrate, server, sql
from common.store.connect import connect, redacted

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
# From every process RUNNING until `botfleet check` is OK: each bot registered and judged healthy by the
# watchdog. About 5 s on an idle host, 20 to 35 s on a host whose every core is busy.
READY_TIMEOUT_S = 120
# How often a start asks whether the fleet is ready: each answer costs a connection.
READY_POLL_S = 1.0
# A foreground `up` relays supervisord's log this often, and notices its exit.
FOLLOW_INTERVAL_S = 0.2
# What stops a foreground `up`: Ctrl-C, `kill`, and the terminal going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# At most this many names in a message; the rest are counted.
LISTED_NAMES = 8


def expected_processes(config, host=None) -> set:
    """supervisord's names of every process this host runs: each of its bots' (replicas too) and the watchdog."""
    names = {"watchdog"}
    for spec in config.local_bots(host).values():
        names.update(process_names(spec.name, spec.replicas))
    return names


def supervisord_command(fleet_paths) -> list[str]:
    return [sys.executable, "-m", "supervisor.supervisord", "-c", str(fleet_paths.supervisord_conf)]


def supervisord_env(config, url, fleet_paths, extra_env=None) -> dict:
    return {**os.environ, "DATABASE_URL": url, **fleet_paths.environment(config.root), **(extra_env or {})}


def _prepare(config, fleet_paths, url, executable=None):
    """Everything supervisord needs on disk before it starts: its rendered files (with the database's view of
    which bots are disabled, so that supervisord does not start them) and the log folder."""
    render.write(config, fleet_paths, executable, disabled=render.disabled_bots(url))
    fleet_paths.log_dir.mkdir(parents=True, exist_ok=True)


def start_supervisord(config, url, *, fleet_paths=None, extra_env=None, executable=None) -> subprocess.Popen:
    """Render supervisord's files and start it in its own session; returns at once."""
    fleet_paths = fleet_paths or config.paths
    _prepare(config, fleet_paths, url, executable)
    # supervisord runs in the foreground of its own process (nodaemon) and logs to its logfile.
    return subprocess.Popen(supervisord_command(fleet_paths), env=supervisord_env(config, url, fleet_paths, extra_env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_running(config, fleet_paths=None, timeout_s=START_TIMEOUT_S):
    """Until every process of the fleet is RUNNING; a BotfleetError naming those that failed instead."""
    fleet_paths = fleet_paths or config.paths
    expected = expected_processes(config, fleet_paths.host_name) - render.disabled_processes(config, fleet_paths)
    supervisor.wait_running(fleet_paths.supervisor_socket, expected, timeout_s, failed_says="starting the fleet",
                            log_dir=fleet_paths.log_dir)
    return expected


def check_connections(config, url) -> connections.Budget:
    """This host's fleet against the server's connections now, reported: a ConnectionBudgetError with every
    number when it cannot fit, a warning on stderr above the warning share, else a line on stdout."""
    with connect(url, autocommit=True, application_name="botfleet-cli") as conn:
        verdict = connections.measure(conn, connections.fleet_need(config))
    if verdict.level == "refused":
        raise connections.ConnectionBudgetError(verdict.message + _embedded_advice(config, verdict))
    if verdict.level == "warning":
        print(f"botfleet: warning: {verdict.message}{_embedded_advice(config, verdict)}", file=sys.stderr)
    else:
        print(f"connections: {verdict.message}")
    return verdict


def _embedded_advice(config, verdict) -> str:
    """The embedded server is ours to size: it is started with a fitting max_connections, but one already
    running keeps the figure it started with."""
    wanted = connections.embedded_max_connections(config)
    if server.external_url(config) or verdict.server.max_connections >= wanted:
        return ""
    return (f"; the embedded server runs with max_connections {verdict.server.max_connections}: `botfleet down` "
            f"stops it, and the next start gives it {wanted}")


def up(config, *, daemon=False, readiness=None, ready_timeout_s=READY_TIMEOUT_S) -> int:
    """Start the fleet: in the foreground until a stop signal, or (daemon) returning once it is ready.

    `readiness(url)` is `botfleet check`'s verdict on this host's bots, (exit code, line): a start waits for it
    to be OK (0), and says so; None leaves it unasked (the fleet is up once every process is RUNNING)."""
    _keep_output_working()
    check_handlers(config)
    config.local_bots()  # a host missing from `hosts:` is refused before anything starts
    fleet_paths = config.paths
    _refuse_a_running_fleet(fleet_paths)
    ready = _Readiness(readiness, ready_timeout_s, not_before_s=config.watchdog.stale_after_s)
    if not daemon:
        return _run_in_foreground(config, fleet_paths, ready)
    url = _start_database(config, fleet_paths)
    start_supervisord(config, url)
    expected = wait_running(config)
    print(f"supervisord runs {len(expected)} process(es) (bots and the watchdog); `botfleet supervisorctl status`")
    return ready.wait(url)


def _refuse_a_running_fleet(fleet_paths):
    """A second supervisord beside a running one, or beside the processes of one that died, would run every bot
    twice (and fail on the watchdog's port)."""
    if supervisor.process_states(fleet_paths.supervisor_socket) is not None:
        raise BotfleetError(f"supervisord is already running ({fleet_paths.supervisor_socket}); "
                            "use `botfleet down` first")
    running = orphans.find(fleet_paths)
    if running:
        raise BotfleetError(f"{len(running)} process(es) of this fleet ({fleet_paths.var}) are running on this host "
                            f"without their supervisord answering on {fleet_paths.supervisor_socket}: "
                            f"{_listed(running)}; `botfleet down` stops them")


def _start_database(config, fleet_paths) -> str:
    """The database at the newest schema, with the config written, and the lock as a start leaves it."""
    url = server.resolve_url(config)
    # Before the schema is touched or any process starts: a fleet that cannot connect must not start at all.
    print(f"database: {redacted(url)}")
    check_connections(config, url)
    migrate.upgrade(url, config)
    with connect(url, autocommit=True) as conn:
        alive = [f"{row['host']}: {row['name']} (pid {row['pid']})" for row in conn.execute(
            sql.ALIVE_ON_OTHER_HOSTS, {"host": fleet_paths.host_name, "alive_s": config.hung_after_s})]
        reset, message = lock_on_start(read_lock(conn), alive)
        if reset:
            reset_lock(conn, "botfleet up")
    if message:
        print(message)
    return url


def lock_on_start(lock, alive_elsewhere: list) -> tuple[bool, str | None]:
    """(open the lock?, what to say) for a start that finds `lock`, while the processes `alive_elsewhere` of other
    hosts are alive. Pure.

    A first start of the whole fleet starts it open (the seed's server boots open), whatever it went down with;
    a host joining a running fleet leaves the lock to those who hold it: an admin's ops_only, or an exclusive
    ticket's run that closed it."""
    if lock.is_open:
        return False, None
    if not alive_elsewhere:
        return True, f"fleet lock was {lock.describe()}: opened by this start"
    return False, (f"fleet lock is {lock.describe()}: left as it is, as other hosts' processes are alive "
                   f"({_listed(alive_elsewhere)})")


def _listed(items) -> str:
    items = [str(item) for item in items]
    more = len(items) - LISTED_NAMES
    return ", ".join(items[:LISTED_NAMES]) + (f" and {more} more" if more > 0 else "")


class _Readiness:
    """Whether the fleet is ready as `botfleet check` judges it (every bot registered and found healthy by the
    watchdog), asked at most once per READY_POLL_S, within `timeout_s`.

    Not asked before `not_before_s` (the watchdog's stale_after) from now, the start of `up`: until then `check`
    may still be OK on the verdicts of the fleet that went down just before; after it, an OK is the new
    watchdog's, on bots of this start."""

    def __init__(self, probe, timeout_s: float, not_before_s: float):
        self.probe, self.timeout_s = probe, timeout_s
        self.ready = probe is None
        self.line = "not asked yet"
        self.next_at = time.monotonic() + not_before_s
        self.deadline = None

    def start(self):
        self.deadline = time.monotonic() + self.timeout_s

    def poll(self, url) -> bool:
        if not self.ready and time.monotonic() >= self.next_at:
            code, self.line = self.probe(url)
            self.ready = code == 0
            self.next_at = time.monotonic() + READY_POLL_S
        return self.ready

    @property
    def late(self) -> bool:
        return not self.ready and time.monotonic() > self.deadline

    def wait(self, url) -> int:
        """`up --daemon`: until ready, or a BotfleetError saying plainly that it is not, and what is missing."""
        if self.probe is None:
            print("fleet is up")
            return 0
        print(f"waiting for every bot to register and the watchdog to find it healthy (at most {self.timeout_s:g}s)")
        self.start()
        try:
            wait_until(lambda: self.poll(url), self.timeout_s, "the fleet to be ready")
        except TimeoutError:
            raise BotfleetError(f"the fleet is running but not ready after {self.timeout_s:g}s: {self.line}; it is "
                                f"left running: `botfleet check` follows it, `botfleet down` stops it") from None
        print(f"fleet is ready: {self.line}")
        return 0


class _StopSignals:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP on a foreground `up`.

    Before supervisord runs, the first interrupts the start (KeyboardInterrupt), and what was started is
    stopped. Once it runs, the first is passed on to supervisord as SIGTERM (a SIGHUP would make it restart
    every program), and the rest are ignored: a second Ctrl-C does not hurry its drain, and the terminal's
    SIGHUP that follows a Ctrl-C which killed the shell does not either. Nothing is printed here: a print
    interrupted by a signal handler that prints fails."""

    def __init__(self):
        self.received = None  # the first stop signal's name
        self.received_at = None
        self.supervisord = None
        self.cleaning = False

    def install(self):
        # Python ignores SIGPIPE already; said here because the clean-up depends on it: a write to a pipe whose
        # reader died must fail (and be dropped), not kill this process before it has stopped the fleet.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        if self.received is not None or self.cleaning:
            return
        self.received, self.received_at = signal.Signals(signum).name, time.monotonic()
        if self.supervisord is None:
            raise KeyboardInterrupt
        self.supervisord.send_signal(signal.SIGTERM)


class _LogTail:
    """supervisord's log file, relayed line by line to this terminal from where it ends now. supervisord itself
    writes to its file only: writing to the terminal, it died of a pipe whose reader Ctrl-C had killed first."""

    def __init__(self, path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def relay(self):
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < self.offset:  # rotated: a new file from its start
            self.offset = 0
        if size == self.offset:
            return
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            print(line.decode(errors="replace"), flush=True)


def _run_in_foreground(config, fleet_paths, readiness) -> int:
    """supervisord in a session of its own, so that only this process hears the terminal's Ctrl-C and it stops
    supervisord on any stop signal; once supervisord has stopped every bot and exited (or died), whatever of
    the fleet is left is stopped, and the embedded database too, as `botfleet down` does."""
    stops = _StopSignals()
    stops.install()
    proc = None
    try:
        url = _start_database(config, fleet_paths)
        _prepare(config, fleet_paths, url)
        tail = _LogTail(fleet_paths.log_dir / "supervisord.log")
        print(f"starting supervisord with {len(expected_processes(config))} process(es); Ctrl-C stops the fleet",
              flush=True)
        proc = subprocess.Popen(supervisord_command(fleet_paths), env=supervisord_env(config, url, fleet_paths),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        stops.supervisord = proc
        readiness.start()
        return _follow(proc, tail, readiness, stops, url)
    finally:
        stops.cleaning = True
        if proc is not None and proc.poll() is None:  # an error of ours: supervisord still stops every bot
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        _stop_leftovers(fleet_paths)
        _stop_database(config, fleet_paths)


def _follow(proc, tail, readiness, stops, url) -> int:
    """Relay supervisord's log and say when the fleet is ready, until supervisord exits; its exit status."""
    said_late = said_stopping = False
    while True:
        try:
            code = proc.wait(FOLLOW_INTERVAL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        tail.relay()
        if stops.received:
            if not said_stopping:
                said_stopping = True
                print(f"{stops.received}: stopping the fleet (every bot drains, then the database stops)", flush=True)
            if time.monotonic() - stops.received_at > STOP_TIMEOUT_S:
                proc.kill()  # its programs were given their stop timeouts; what is left is stopped below
        elif not readiness.ready:
            if readiness.poll(url):
                print(f"fleet is ready: {readiness.line}", flush=True)
            elif readiness.late and not said_late:
                said_late = True
                print(f"fleet is not ready after {readiness.timeout_s:g}s: {readiness.line} (still waiting)",
                      flush=True)
    tail.relay()
    how = f"exit status {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
    # Without a stop signal here: `botfleet down` from another terminal (status 0), or supervisord died.
    print(f"supervisord stopped ({how})" if stops.received else f"supervisord exited without a stop signal here ({how})")
    return 0 if code == 0 else 1


def _stop_leftovers(fleet_paths):
    """Stop the processes of this fleet still running without a supervisord, saying which."""
    found = orphans.find(fleet_paths)
    if not found:
        return
    waits = orphans.stop_waits_s(fleet_paths.programs_dir)
    longest_s = max(orphans.stop_wait_of(proc.name, waits) for proc in found)
    print(f"{len(found)} process(es) of this fleet were running without their supervisord: {_listed(found)}; "
          f"stopping them: SIGTERM, then SIGKILL after each one's stop timeout (at most {longest_s:g}s)", flush=True)
    stopped, killed = orphans.stop(found, waits)
    print(f"stopped {len(stopped)} process(es)" + (f"; killed {len(killed)} still running after their stop "
                                                   f"timeout: {_listed(killed)}" if killed else ""), flush=True)


def _stop_database(config, fleet_paths):
    if not server.external_url(config) and server.stop_embedded(fleet_paths.pgdata):
        print("embedded database stopped", flush=True)


class _OutputThatOutlivesItsReader:
    """stdout or stderr whose reader may go first: a pipe to `tee` or `tail` that the same Ctrl-C killed, a
    terminal that closed. From the first failed write on, output goes to /dev/null instead of raising, so that
    stopping the fleet goes on (and so does the interpreter's last flush at exit)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError:
            self._drop()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError:
            self._drop()

    def _drop(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # what the stream still holds is flushed there
        except (OSError, ValueError):
            self._stream = open(os.devnull, "w")  # a stream without a file descriptor of its own
        finally:
            os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _keep_output_working():
    """For the rest of this process: `up` is stopped by the same Ctrl-C that kills the reader of its output."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _OutputThatOutlivesItsReader):
            setattr(sys, name, _OutputThatOutlivesItsReader(stream))


def shutdown(fleet_paths, timeout_s=STOP_TIMEOUT_S) -> dict | None:
    """Stop supervisord and wait until it and every bot it ran have exited; its process states before, or
    None when it was not running."""
    states = supervisor.process_states(fleet_paths.supervisor_socket)
    if states is None:
        return None
    pid = _pid(fleet_paths.supervisord_pidfile)
    supervisor.client(fleet_paths.supervisor_socket).supervisor.shutdown()
    # supervisord exits only after its programs have stopped (each within its stopwaitsecs), so its
    # exit, not a silent socket, is the sign that every bot has drained.
    try:
        wait_until(lambda: supervisor.process_states(fleet_paths.supervisor_socket) is None
                   and (pid is None or not _alive(pid)), timeout_s, "supervisord to stop")
    except TimeoutError as exc:
        raise BotfleetError(str(exc)) from None
    return states


def _pid(pidfile) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of ours that exited stays a zombie until reaped; it is gone all the same.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def down(config, *, keep_database=False) -> int:
    """Stop supervisord and every bot, then whatever of the fleet runs without a supervisord (one that died
    leaves its programs running), then the embedded database."""
    fleet_paths = config.paths
    states = shutdown(fleet_paths)
    print(f"supervisord stopped ({len(states)} process(es))" if states is not None
          else f"supervisord did not answer on {fleet_paths.supervisor_socket}")
    _stop_leftovers(fleet_paths)
    if not keep_database:
        _stop_database(config, fleet_paths)
    return 0
