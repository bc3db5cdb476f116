"""The decisions of `botfleet up` and `down`, table-tested without processes: which lock a start leaves, which
processes belong to a fleet, how long each is given to stop (issue 19)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.access.fleet_lock import FleetLock
from common.config.load import load
from common.config.paths import FleetPaths
from common.fleet import orphans, render
from common.fleet.lifecycle import _listed, lock_on_start
from tests.conftest import write_config

AT = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = FleetLock("open", None, "botfleet up", AT, None, None)
ADMIN = FleetLock("ops_only", "restore by hand", "cli:ops", AT, None, None)
EXCLUSIVE = FleetLock("closed", "exclusive ticket 7 runs alone", "bot", AT, 7, "open")
ALIVE = ["host-a: helpdesk-request-1-new (pid 41)"]


@pytest.mark.parametrize("lock, alive, reset, message", [
    (OPEN, [], False, None),
    (OPEN, ALIVE, False, None),
    # A first start of the whole fleet: open, whatever it went down with.
    (ADMIN, [], True, "fleet lock was ops_only (restore by hand; by cli:ops): opened by this start"),
    (EXCLUSIVE, [], True, "fleet lock was closed (exclusive ticket 7 runs alone; by bot), then open: opened by this "
                          "start"),
    # A host joining a running fleet: the admin's lock, and an exclusive run's hold, are theirs.
    (ADMIN, ALIVE, False, "fleet lock is ops_only (restore by hand; by cli:ops): left as it is, as other hosts' "
                          "processes are alive (host-a: helpdesk-request-1-new (pid 41))"),
    (EXCLUSIVE, ALIVE, False, "fleet lock is closed (exclusive ticket 7 runs alone; by bot), then open: left as it "
                              "is, as other hosts' processes are alive (host-a: helpdesk-request-1-new (pid 41))"),
])
def test_a_start_opens_the_lock_only_when_no_other_hosts_processes_are_alive(lock, alive, reset, message):
    assert lock_on_start(lock, alive) == (reset, message)


def test_long_lists_are_cut_and_counted():
    assert _listed(range(3)) == "0, 1, 2"
    assert _listed(range(11)) == "0, 1, 2, 3, 4, 5, 6, 7 and 3 more"


VAR = Path("/srv/fleet/var")
MARKS = orphans.FleetMarks.of(FleetPaths(home=Path("/srv/fleet"), var=VAR))
SUPERVISORD = ["/srv/fleet/.venv/bin/python", "-m", "supervisor.supervisord", "-c", "/srv/fleet/supervisord.conf"]
BOT = ["/srv/fleet/.venv/bin/python3.11", "/srv/fleet/.venv/bin/botfleet", "--config", "/srv/fleet/supervisord.d/../config",
       "bot", "run", "helpdesk-request-1-new"]
CHILD_OF_OURS = {"SUPERVISOR_SERVER_URL": "unix:///srv/fleet/var/supervisor.sock",
                 "SUPERVISOR_PROCESS_NAME": "helpdesk-request-1-new", "BOTFLEET_VAR": str(VAR)}


@pytest.mark.parametrize("environ, argv, name", [
    (CHILD_OF_OURS, BOT, "helpdesk-request-1-new"),
    # A handler's own subprocess inherits its bot's environment, and goes with it.
    (CHILD_OF_OURS, ["sh", "-c", "sleep 600"], "helpdesk-request-1-new"),
    # The socket's path as supervisord expanded it from %(here)s.
    ({**CHILD_OF_OURS, "SUPERVISOR_SERVER_URL": "unix:///srv/fleet/var/../var/supervisor.sock"}, BOT,
     "helpdesk-request-1-new"),
    ({"BOTFLEET_VAR": str(VAR)}, SUPERVISORD, "supervisord"),
    ({"BOTFLEET_VAR": str(VAR)}, ["/usr/bin/supervisord", "-c", "/srv/fleet/supervisord.conf"], "supervisord"),
    # Another fleet's supervisord and programs (another var folder), and the operator's own shell.
    ({**CHILD_OF_OURS, "SUPERVISOR_SERVER_URL": "unix:///srv/other/var/supervisor.sock"}, BOT, None),
    ({"BOTFLEET_VAR": "/srv/other/var"}, SUPERVISORD, None),
    ({"BOTFLEET_VAR": str(VAR)}, ["bash"], None),
    ({}, BOT, None),
])
def test_a_fleets_processes_are_known_by_their_supervisords_socket_or_var_folder(environ, argv, name):
    assert orphans.member_name(environ, argv, MARKS) == name


def test_each_process_is_given_its_programs_stop_timeout(tmp_path):
    write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:advance\nreplicas: 2\n"
                                                                   "stop_timeout: 20s\n"})
    config = load(tmp_path / "config")
    render.write(config)
    waits = orphans.stop_waits_s(config.paths.programs_dir)
    margin = render.STOP_MARGIN_S
    assert orphans.stop_wait_of("testms-pipe-1-first-1", waits) == 20 + margin  # a replica: its program's
    assert orphans.stop_wait_of("testms-pipe-2-second", waits) == 5 + margin  # write_config's stop_timeout
    assert orphans.stop_wait_of("watchdog", waits) == waits["watchdog"]
    assert orphans.stop_wait_of("a-program-since-removed", waits) == orphans.DEFAULT_STOP_WAIT_S
