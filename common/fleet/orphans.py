"""This fleet's processes on this host, found without asking supervisord, and stopped the way supervisord would.

supervisord may be gone while its programs live on: killed (kill -9, the OOM killer), or dead of a write to
a terminal pipe whose reader went first. Its socket then answers nothing, yet every bot it started carries
in its environment the socket of the supervisord that started it (SUPERVISOR_SERVER_URL, set by supervisord
for each child and inherited by the child's own children) and its name there (SUPERVISOR_PROCESS_NAME);
supervisord itself carries the fleet's var folder (BOTFLEET_VAR, set by `botfleet up`). Those are what a
fleet's processes are recognised by: one fleet's var folder, socket included, is never another's.

Linux only: processes are read from /proc.
"""

import configparser
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from common.config.paths import VAR_ENV
from common.fleet.wait import POLL_INTERVAL_S

SUPERVISORD = "supervisord"
# supervisord's own default stopwaitsecs, for a process whose program no rendered file names any more.
DEFAULT_STOP_WAIT_S = 10.0
# After SIGKILL the kernel reaps at once; this only bounds the wait for a process stuck in the kernel (D state).
KILL_WAIT_S = 5.0
_PROC = Path("/proc")


@dataclass(frozen=True)
class FleetProcess:
    pid: int
    name: str  # supervisord's name of the process, or "supervisord"
    started: int = 0  # its start time (clock ticks after boot): a pid used again later is another process

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


@dataclass(frozen=True)
class FleetMarks:
    """What a process of one fleet carries: the URL of its supervisord's socket, and its var folder."""

    socket_url: str
    var: str

    @classmethod
    def of(cls, fleet_paths) -> "FleetMarks":
        return cls(socket_url="unix://" + os.path.realpath(fleet_paths.supervisor_socket),
                   var=os.path.realpath(fleet_paths.var))


def member_name(environ: dict, argv: list, marks: FleetMarks) -> str | None:
    """The name of a process in this fleet (its supervisord's name for it, or "supervisord"), None for a process
    of anything else, from its environment and command line as read (paths compared with symlinks resolved)."""
    url = environ.get("SUPERVISOR_SERVER_URL", "")
    if url.startswith("unix://") and "unix://" + os.path.realpath(url[len("unix://"):]) == marks.socket_url:
        # A bot's own children (a handler's subprocess) carry it too and go with it, under its name.
        return environ.get("SUPERVISOR_PROCESS_NAME") or "(a child of this fleet's supervisord)"
    var = environ.get(VAR_ENV)
    if var and os.path.realpath(var) == marks.var and _is_supervisord(argv):
        return SUPERVISORD
    return None


def _is_supervisord(argv) -> bool:
    # `python -m supervisor.supervisord -c ...` as `botfleet up` starts it, or the `supervisord` script.
    return "supervisor.supervisord" in argv or any(os.path.basename(arg) == SUPERVISORD for arg in argv[:2])


def find(fleet_paths) -> list[FleetProcess]:
    """The processes of this fleet (var folder) running on this host, supervisord included when it runs; the
    embedded PostgreSQL is not among them (a bot may have started it: `botfleet down` stops it last)."""
    marks = FleetMarks.of(fleet_paths)
    skip = _ancestors_of_this_process() | _embedded_server_pids(fleet_paths.pgdata)
    found = []
    for entry in _PROC.glob("[0-9]*"):
        pid = int(entry.name)
        if pid in skip:
            continue
        try:
            state, started = _stat(entry)
            if state == "Z":  # exited; only its parent's wait is missing
                continue
            environ = _environ(entry)
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile, or not ours to read (and so not ours to stop)
            continue
        name = member_name(environ, argv, marks)
        if name is not None:
            found.append(FleetProcess(pid, name, started))
    return sorted(found, key=lambda p: (p.name != SUPERVISORD, p.name, p.pid))


def _environ(entry: Path) -> dict:
    pairs = (item.split("=", 1) for item in entry.joinpath("environ").read_bytes().decode(errors="replace").split("\0"))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def _fields(entry: Path) -> list:
    """/proc/PID/stat's fields after "pid (comm)": comm may hold spaces and parentheses. [0] is the state,
    [1] the parent, [19] the start time."""
    stat = entry.joinpath("stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def _stat(entry: Path) -> tuple[str, int]:
    fields = _fields(entry)
    return fields[0], int(fields[19])


def _parent(pid: int) -> int:
    return int(_fields(_PROC / str(pid))[1])


def _ancestors_of_this_process() -> set:
    """This process and its ancestors: a `botfleet down` run from a bot's shell must not stop itself."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            break
    return pids


def _embedded_server_pids(pgdata: Path) -> set:
    """The embedded server's postmaster and its children: stopped by `botfleet down` through pg_ctl, after
    every process that uses it."""
    try:
        postmaster = int((Path(pgdata) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return set()
    children = set()
    for entry in _PROC.glob("[0-9]*"):
        try:
            if _parent(int(entry.name)) == postmaster:
                children.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return {postmaster} | children


def stop_waits_s(programs_dir: Path) -> dict:
    """Program name -> its stopwaitsecs, as supervisord read them from the rendered files: what it would have
    given each process to drain."""
    waits = {}
    for path in sorted(Path(programs_dir).glob("*.conf")):
        parser = configparser.RawConfigParser(strict=False)
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in parser.sections():
            if section.startswith("program:"):
                waits[section[len("program:"):]] = parser.getfloat(section, "stopwaitsecs",
                                                                   fallback=DEFAULT_STOP_WAIT_S)
    return waits


def stop_wait_of(name: str, waits: dict) -> float:
    """A process's stop timeout: its program's (a replica `bot-N` is program `bot`'s). Pure."""
    program = name if name in waits else name.rsplit("-", 1)[0]
    return waits.get(program, DEFAULT_STOP_WAIT_S)


def stop(processes, waits: dict) -> tuple[list, list]:
    """SIGTERM to each, as supervisord's stopsignal; SIGKILL to each still there after its stop timeout.
    Returns (those that stopped on SIGTERM, those killed)."""
    deadlines, stopped, killed = {}, [], []
    for proc in processes:
        if _running(proc):
            _send(proc.pid, signal.SIGTERM)
            deadlines[proc] = time.monotonic() + stop_wait_of(proc.name, waits)
        else:
            stopped.append(proc)
    while deadlines:
        now = time.monotonic()
        for proc, deadline in list(deadlines.items()):
            if not _running(proc):
                stopped.append(proc)
                del deadlines[proc]
            elif now > deadline:
                _send(proc.pid, signal.SIGKILL)
                killed.append(proc)
                del deadlines[proc]
        time.sleep(POLL_INTERVAL_S)  # poll interval; each process's deadline is checked above
    kill_deadline = time.monotonic() + KILL_WAIT_S
    while any(_running(proc) for proc in killed) and time.monotonic() < kill_deadline:
        time.sleep(POLL_INTERVAL_S)
    return stopped, killed


def _send(pid: int, signum) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it exited just now: what the signal was for


def _running(proc: FleetProcess) -> bool:
    """Alive as the process found, and not a zombie. A zombie child of ours (supervisord under a foreground
    `up`) is reaped here."""
    try:
        if os.waitpid(proc.pid, os.WNOHANG)[0] == proc.pid:
            return False
    except ChildProcessError:
        pass  # not our child: its own parent (or init) reaps it
    try:
        state, started = _stat(_PROC / str(proc.pid))
    except (OSError, ValueError, IndexError):
        return False
    return state != "Z" and (started == proc.started or not proc.started)
