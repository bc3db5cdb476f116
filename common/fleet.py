"""`botfleet up` and `botfleet down`: the database, the schema, the rendered config and supervisord."""

import os
import subprocess
import sys
import time

from . import config as config_module
from . import database, supervisor_render, supervisor_rpc
from .database import PROJECT_ROOT
from .errors import BotfleetError

SUPERVISORD_CONF = PROJECT_ROOT / "supervisord.conf"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


def socket_path():
    return PROJECT_ROOT / "var" / "supervisor.sock"


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise BotfleetError(f"timed out after {timeout_s}s waiting for {what}")


def up(config, *, daemon=False) -> int:
    config_module.check_handlers(config)
    if supervisor_rpc.process_states(socket_path()) is not None:
        raise BotfleetError(f"supervisord is already running ({socket_path()}); use `botfleet down` first")
    url = database.resolve_url(config)
    database.upgrade(url, config)
    supervisor_render.write(config, PROJECT_ROOT / "supervisord.d")
    (PROJECT_ROOT / "var" / "log").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": url, "BOTFLEET_CONFIG": str(config.root)}
    command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(SUPERVISORD_CONF)]
    expected = set()
    for spec in config.bots.values():
        expected |= {spec.name} if spec.replicas == 1 else {f"{spec.name}-{n}" for n in range(spec.replicas)}
    expected.add("watchdog")
    print(f"database: {url}")
    if not daemon:
        print(f"starting supervisord with {len(expected)} bot process(es); Ctrl-C stops the fleet")
        os.execve(sys.executable, command, env)
    # -n keeps supervisord in the foreground of its own (detached) process, so it logs as configured.
    subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)

    def all_running():
        states = supervisor_rpc.process_states(socket_path())
        if states is None:
            return False
        failed = {name: state for name, state in states.items() if state in ("FATAL", "EXITED")}
        if failed:
            raise BotfleetError(f"bots failed to start: {failed}; see var/log/<bot>.log")
        return expected <= {name for name, state in states.items() if state == supervisor_rpc.RUNNING}

    _wait(all_running, START_TIMEOUT_S, "every bot to be RUNNING")
    print(f"fleet is up: {len(expected)} process(es) RUNNING (bots and the watchdog); `supervisorctl -c {SUPERVISORD_CONF} status`")
    return 0


def down(config, *, keep_database=False) -> int:
    states = supervisor_rpc.process_states(socket_path())
    if states is not None:
        supervisor_rpc.client(socket_path()).supervisor.shutdown()
        _wait(lambda: supervisor_rpc.process_states(socket_path()) is None, STOP_TIMEOUT_S, "supervisord to stop")
        print(f"supervisord stopped ({len(states)} process(es))")
    else:
        print("supervisord was not running")
    external = os.environ.get("DATABASE_URL") or config.database_url
    if not keep_database and not external and database.stop_embedded():
        print("embedded database stopped")
    return 0
