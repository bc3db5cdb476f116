"""`botfleet up` and `down` as an operator runs them, on an embedded database in a var folder of their own:
`down` returns only once every bot has drained and the database has stopped, so `down` then `up --daemon`
works time after time; `up --daemon` returns once `check` is OK; Ctrl-C, SIGTERM or SIGHUP on a foreground `up`,
typed into a real terminal with the output piped or not, stops the fleet and the embedded database; `down`
stops a fleet whose supervisord died, and `up` refuses to start a second copy beside it (issue 19)."""

import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.config.paths import FleetPaths
from common.fleet import supervisor
from common.store.connect import connect
from tests.conftest import THREE_STATES, write_config
from tests.harness import BOTFLEET, ROOT, free_port, wait_until

# Each test runs its own embedded server: the same whichever server TEST_DATABASE_URL names.
pytestmark = [pytest.mark.processes, pytest.mark.own_server]


@pytest.fixture
def project(tmp_path):
    write_config(tmp_path / "config", types={"updown/three": THREE_STATES},
                 fleet_extra=f"watchdog:\n  listen: 127.0.0.1:{free_port()}\n")
    paths = FleetPaths(home=tmp_path, var=tmp_path / "var")
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "PYTHONPATH": str(ROOT)}
    yield tmp_path, paths, env
    subprocess.run([*BOTFLEET, "--config", str(tmp_path / "config"), "down"], cwd=ROOT, env=env,
                   capture_output=True, timeout=120)


def botfleet(project_dir, env, *args, timeout=180):
    return subprocess.run([*BOTFLEET, "--config", str(project_dir / "config"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def in_ps(project_dir) -> list[str]:
    """What `ps` shows of the fleet of `project_dir`: every process whose command line or environment names the
    project folder (tmux, the terminal of these tests, aside)."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        pid, _, args = line.strip().partition(" ")
        if int(pid) == os.getpid() or args.startswith("tmux"):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone since ps listed it
            environ = b""
        if str(project_dir) in args or str(project_dir).encode() in environ:
            found.append(line.strip())
    return found


def fleet_pids(paths) -> dict:
    """Process name -> pid, from supervisord."""
    return {info["name"]: info["pid"] for info in supervisor.client(paths.supervisor_socket).supervisor.getAllProcessInfo()}


def watchdog_restarts_since(paths, since) -> list:
    with connect(f"postgresql://postgres@/postgres?host={paths.pgdata}", autocommit=True) as conn:
        return conn.execute("SELECT bot, reason FROM watchdog_events WHERE action = 'restart' AND at >= %s",
                            (since,)).fetchall()


def test_down_then_up_ten_times_in_a_row(project):
    project_dir, paths, env = project
    round_started = datetime.now(UTC)
    first_started = datetime.now(UTC)
    for round_ in range(10):
        up = botfleet(project_dir, env, "up", "--daemon")
        assert up.returncode == 0, (round_, up.stdout + up.stderr)
        # It returned once the fleet was ready: `check` is OK at once, on this start's verdicts.
        assert "fleet is ready: OK: " in up.stdout, (round_, up.stdout)
        check = botfleet(project_dir, env, "check")
        assert check.returncode == 0 and check.stdout.startswith("OK: "), (round_, check.stdout + check.stderr)
        assert watchdog_restarts_since(paths, first_started) == [], round_  # nothing killed in any start so far
        # The previous round's `down` returned only after every bot drained: each deregistered itself
        # (stopped_at = its last heartbeat), none was killed or left behind.
        with connect(f"postgresql://postgres@/postgres?host={paths.pgdata}", autocommit=True) as conn:
            undrained = conn.execute("SELECT bot_name, pid FROM bot_processes WHERE started_at < %s "
                                     "AND stopped_at IS DISTINCT FROM heartbeat_at", (round_started,)).fetchall()
            assert undrained == [], (round_, undrained)
            # A fresh start starts the fleet open, whatever lock it went down with (set in round 0).
            assert conn.execute("SELECT state FROM fleet_lock").fetchone()["state"] == "open"
        if round_ == 1:
            assert "fleet lock was ops_only (maintenance; by cli:" in up.stdout, up.stdout
        if round_ == 0:
            locked = botfleet(project_dir, env, "lock", "--reason", "maintenance")
            assert locked.returncode == 0 and "ops_only (maintenance" in locked.stdout, locked.stdout + locked.stderr
        round_started = datetime.now(UTC)
        down = botfleet(project_dir, env, "down")
        assert down.returncode == 0, (round_, down.stdout + down.stderr)
        assert "embedded database stopped" in down.stdout
        assert not (paths.pgdata / "postmaster.pid").exists()
        assert supervisor.process_states(paths.supervisor_socket) is None
        assert in_ps(project_dir) == [], round_


def test_ctrl_c_on_a_foreground_up_stops_the_fleet_and_the_embedded_database(project):
    project_dir, paths, env = project
    up = subprocess.Popen([*BOTFLEET, "--config", str(project_dir / "config"), "up"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until(lambda: (supervisor.process_states(paths.supervisor_socket) or {}).get("watchdog") == "RUNNING",
                   60, "the fleet to run")
        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    output = up.stdout.read()
    assert "embedded database stopped" in output, output[-2000:]
    assert not (paths.pgdata / "postmaster.pid").exists()
    assert supervisor.process_states(paths.supervisor_socket) is None


class Terminal:
    """A real terminal (a tmux pane) running a shell script, into which keys are typed as a person types them:
    Ctrl-C there reaches the whole foreground process group, as a signal sent from a script does not."""

    def __init__(self, folder: Path, env: dict):
        self.folder = folder
        self.socket = folder / "tmux.sock"
        self.env = {**env, "TERM": env.get("TERM") or "xterm"}

    def tmux(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], env=self.env, capture_output=True, text=True,
                              timeout=30)

    def run(self, script: str):
        """bash runs `script` from a file of the terminal's folder: no command line of the shell names the project."""
        path = self.folder / "run.sh"
        path.write_text(script)
        started = self.tmux("new-session", "-d", "-s", "t", "-x", "250", "-y", "50", f"bash {path}")
        assert started.returncode == 0, started.stderr

    def type(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t").stdout

    def close(self):
        """The terminal goes away: its shell and foreground processes get SIGHUP."""
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path_factory, project):
    assert shutil.which("tmux"), "tmux is needed: `make test` installs it (apt-get install tmux)"
    term = Terminal(tmp_path_factory.mktemp("terminal"), project[2])
    yield term
    term.close()


def up_pid(project_dir) -> int:
    """The foreground `botfleet up` of the project, as ps shows it."""
    return next(int(line.split()[0]) for line in in_ps(project_dir) if "common.cli" in line and line.endswith(" up"))


# The cases: the pipe's reader (tail, tee) dies of the same Ctrl-C first, so writes to up's stdout fail.
@pytest.mark.parametrize("pipe, stop", [
    ("| tail -5", "Ctrl-C"),
    ("| tee {log}", "Ctrl-C"),
    ("", "Ctrl-C"),
    ("| tee {log}", "the terminal closes"),
    ("| tail -5", "SIGTERM"),
])
def test_a_foreground_up_in_a_terminal_stops_everything_it_started(project, terminal, pipe, stop):
    project_dir, paths, env = project
    log = terminal.folder / "up.log"
    up = " ".join([*BOTFLEET, "--config", str(project_dir / "config"), "up"])
    # The shell says how `up` ended, and stays for the screen to be read (unless Ctrl-C ended it too).
    terminal.run(f"cd {ROOT}\n{up} 2>&1 {pipe.format(log=log)}\n"
                 f"echo \"up exit status ${{PIPESTATUS[0]}}\"\nsleep 600\n")
    wait_until(lambda: (supervisor.process_states(paths.supervisor_socket) or {}).get("watchdog") == "RUNNING",
               90, lambda: f"the fleet to run: {terminal.screen()}")
    # The line that says the bots work.
    if pipe == "":
        wait_until(lambda: "fleet is ready: OK: " in terminal.screen(), 90, lambda: f"the ready line: {terminal.screen()}")
    elif "tee" in pipe:
        wait_until(lambda: "fleet is ready: OK: " in log.read_text(), 90, lambda: f"the ready line: {log.read_text()}")
    running = in_ps(project_dir)
    assert len(running) >= 6, running  # up, supervisord, the watchdog, three bots

    if stop == "Ctrl-C":
        terminal.type("C-c")
    elif stop == "SIGTERM":
        os.kill(up_pid(project_dir), signal.SIGTERM)
    else:
        terminal.close()
    wait_until(lambda: in_ps(project_dir) == [], 90,
               lambda: "nothing of the fleet left; ps shows:\n" + "\n".join(in_ps(project_dir)))
    assert not (paths.pgdata / "postmaster.pid").exists()
    assert supervisor.process_states(paths.supervisor_socket) is None
    if pipe == "":  # the shell goes on after `up`, and shows how it ended
        wait_until(lambda: "up exit status" in terminal.screen(), 30, lambda: f"up's exit status: {terminal.screen()}")
        screen = terminal.screen()
        assert "SIGINT: stopping the fleet" in screen and "embedded database stopped" in screen, screen
        assert "up exit status 0" in screen, screen


# A handler's child that ignores SIGTERM: `down` must SIGKILL it after its bot's stop timeout.
DEAF_TO_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('deaf', flush=True); "
                   "time.sleep(600)")


def test_down_stops_a_fleet_whose_supervisord_died_and_up_refuses_to_start_beside_it(project):
    project_dir, paths, env = project
    assert botfleet(project_dir, env, "up", "--daemon").returncode == 0
    before = fleet_pids(paths)
    os.kill(int(paths.supervisord_pidfile.read_text()), signal.SIGKILL)
    wait_until(lambda: supervisor.process_states(paths.supervisor_socket) is None, 30, "supervisord to be gone")
    # Its programs live on, as after a kill -9 or a write to a dead pipe; one of them has a child deaf to SIGTERM.
    bot = "updown-three-1-a"
    bot_env = dict(item.split("=", 1) for item in
                   Path(f"/proc/{before[bot]}/environ").read_bytes().decode().split("\0") if "=" in item)
    deaf = subprocess.Popen([sys.executable, "-c", DEAF_TO_SIGTERM], env=bot_env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert deaf.stdout.readline() == "deaf\n"
        orphans = in_ps(project_dir)
        assert len(orphans) >= 5, orphans  # the watchdog, three bots and the deaf child

        # `up` does not start a second copy of every bot beside them: it names them and says what stops them.
        for mode in (["--daemon"], []):
            refused = botfleet(project_dir, env, "up", *mode)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "of this fleet" in refused.stderr and "without their supervisord" in refused.stderr, refused.stderr
            assert f"watchdog (pid {before['watchdog']})" in refused.stderr, refused.stderr
            assert f"{bot} (pid {deaf.pid})" in refused.stderr, refused.stderr
            assert "`botfleet down` stops them" in refused.stderr, refused.stderr
            assert in_ps(project_dir) == orphans and supervisor.process_states(paths.supervisor_socket) is None

        down = botfleet(project_dir, env, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert deaf.wait(timeout=5) == -signal.SIGKILL
    finally:
        if deaf.poll() is None:
            deaf.kill()
            deaf.wait()
    assert "supervisord did not answer" in down.stdout, down.stdout
    assert "process(es) of this fleet were running without their supervisord" in down.stdout, down.stdout
    assert f"watchdog (pid {before['watchdog']})" in down.stdout, down.stdout
    # The bots drained on SIGTERM; the deaf child was killed after its bot's stop timeout (5 s + 5 s margin).
    assert "at most 10s" in down.stdout and f"killed 1 still running after their stop timeout: {bot} (pid {deaf.pid})" \
        in down.stdout, down.stdout
    assert "embedded database stopped" in down.stdout, down.stdout
    assert in_ps(project_dir) == []


def test_up_daemon_says_plainly_when_the_fleet_is_not_ready_in_time_and_what_is_missing(tmp_path):
    write_config(tmp_path / "config", types={"updown/three": THREE_STATES},
                 bots={"updown-three-2-b": "handler: tests.hangs_under_supervisord:advance\n"},
                 fleet_extra=f"watchdog:\n  listen: 127.0.0.1:{free_port()}\n")
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "PYTHONPATH": str(ROOT)}
    paths = FleetPaths(home=tmp_path, var=tmp_path / "var")
    try:
        up = botfleet(tmp_path, env, "up", "--daemon", "--ready-timeout", "15")
        assert up.returncode == 1, up.stdout + up.stderr
        assert "fleet is ready" not in up.stdout, up.stdout
        assert "the fleet is running but not ready after 15s: CRITICAL: " in up.stderr, up.stderr
        assert "updown-three-2-b" in up.stderr and "`botfleet down` stops it" in up.stderr, up.stderr
        # Left running, as it says.
        assert set(supervisor.process_states(paths.supervisor_socket)) >= {"watchdog", "updown-three-2-b"}
    finally:
        botfleet(tmp_path, env, "down")
    assert in_ps(tmp_path) == []
