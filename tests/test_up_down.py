"""`botfleet up` and `down` as an operator runs them, on an embedded database in a var folder of their own:
`down` returns only once every bot has drained and the database has stopped, so `down` then `up --daemon`
works time after time; Ctrl-C on a foreground `up` stops the fleet and the embedded database."""

import os
import signal
import subprocess
from datetime import UTC, datetime

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


def botfleet(project_dir, env, *args, timeout=120):
    return subprocess.run([*BOTFLEET, "--config", str(project_dir / "config"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_down_then_up_ten_times_in_a_row(project):
    project_dir, paths, env = project
    round_started = datetime.now(UTC)
    for round_ in range(10):
        up = botfleet(project_dir, env, "up", "--daemon")
        assert up.returncode == 0, (round_, up.stdout + up.stderr)
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
