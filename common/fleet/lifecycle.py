"""`botfleet up` and `botfleet down`: the database, the schema, the rendered config and supervisord.

start_supervisord() and wait_running() are also the fleet harness of the tests, the benchmark and
the chaos run, so they start fleets exactly as an operator's `botfleet up --daemon` does.
"""

import os
import signal
import subprocess
import sys

from common.access.fleet_lock import read_lock, reset_lock
from common.config.handlers import check_handlers
from common.config.names import process_names
from common.errors import BotfleetError
from common.fleet import render, supervisor
from common.fleet.wait import wait_until
from common.store import connections, migrate, server
from common.store.connect import connect, redacted

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


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

    def all_running():
        states = supervisor.process_states(fleet_paths.supervisor_socket)
        if states is None:
            return False
        failed = {name: state for name, state in states.items() if state in ("FATAL", "EXITED")}
        if failed:
            raise BotfleetError(f"bots failed to start: {failed}; see {fleet_paths.log_dir}/<bot>.log")
        return expected <= {name for name, state in states.items() if state == supervisor.RUNNING}

    try:
        wait_until(all_running, timeout_s, "every bot to be RUNNING")
    except TimeoutError as exc:
        raise BotfleetError(str(exc)) from None
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


def up(config, *, daemon=False) -> int:
    check_handlers(config)
    config.local_bots()  # a host missing from `hosts:` is refused before anything starts
    fleet_paths = config.paths
    if supervisor.process_states(fleet_paths.supervisor_socket) is not None:
        raise BotfleetError(f"supervisord is already running ({fleet_paths.supervisor_socket}); "
                            "use `botfleet down` first")
    url = server.resolve_url(config)
    # Before the schema is touched or any process starts: a fleet that cannot connect must not start at all.
    print(f"database: {redacted(url)}")
    check_connections(config, url)
    migrate.upgrade(url, config)
    with connect(url, autocommit=True) as conn:
        was = read_lock(conn)
        if not was.is_open:  # the seed's server boots open: a fresh start is a fresh start of the lock too
            reset_lock(conn, "botfleet up")
            print(f"fleet lock was {was.describe()}: opened by this start")
    if not daemon:
        _prepare(config, fleet_paths, url)
        print(f"starting supervisord with {len(expected_processes(config))} process(es); Ctrl-C stops the fleet")
        return _run_in_foreground(config, url, fleet_paths)
    start_supervisord(config, url)
    expected = wait_running(config)
    print(f"fleet is up: {len(expected)} process(es) RUNNING (bots and the watchdog); "
          f"`botfleet supervisorctl status`")
    return 0


def _run_in_foreground(config, url, fleet_paths) -> int:
    """supervisord as a child in this terminal's process group, so Ctrl-C reaches it directly; once it
    has stopped every bot and exited, the embedded database is stopped too, as `botfleet down` does."""
    proc = subprocess.Popen(supervisord_command(fleet_paths), env=supervisord_env(config, url, fleet_paths))

    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)  # a second SIGINT or SIGTERM does not hurry supervisord's drain

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = proc.wait()
    print(f"supervisord stopped (exit status {code})")
    if not server.external_url(config) and server.stop_embedded(fleet_paths.pgdata):
        print("embedded database stopped")
    return code


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
    fleet_paths = config.paths
    states = shutdown(fleet_paths)
    print(f"supervisord stopped ({len(states)} process(es))" if states is not None else "supervisord was not running")
    if not keep_database and not server.external_url(config) and server.stop_embedded(fleet_paths.pgdata):
        print("embedded database stopped")
    return 0
