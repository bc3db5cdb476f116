"""The fleet harness of the tests, the benchmark and the chaos run: real bot processes and real supervisord.

It starts fleets through the same functions as `botfleet up --daemon` (common.fleet.lifecycle), in a
project folder of its own (config/, supervisord.conf, supervisord.d/, var/), and waits with the
product's one poll helper. Nothing here imports pytest, so the benchmark uses it as it is.
"""

import math
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import httpx
from psycopg.conninfo import make_conninfo

from common.config.load import load
from common.config.paths import FleetPaths
from common.fleet import lifecycle, supervisor
from common.fleet.wait import POLL_INTERVAL_S, wait_until
from common.store.connect import libpq_url

__all__ = ["BOTFLEET", "ROOT", "BotProcesses", "Fleet", "free_port", "percentile", "sigkill_one_running",
           "stays_true", "wait_answering", "wait_until", "with_dbname"]

ROOT = Path(__file__).resolve().parent.parent
BOTFLEET = [sys.executable, "-m", "common.cli"]


def stays_true(predicate, duration_s, what="condition", interval_s=POLL_INTERVAL_S):
    """Poll `predicate` for `duration_s`; AssertionError the first time it is false.

    `what` may be a function, called then to describe the state (as in wait_until).
    """
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        if not predicate():
            raise AssertionError(f"{what() if callable(what) else what} stopped holding")
        time.sleep(interval_s)  # poll interval, until the deadline


def with_dbname(url, dbname) -> str:
    """The same server, another database; any libpq URL or key=value conninfo."""
    return make_conninfo(libpq_url(url), dbname=dbname)


def wait_answering(process, base_url, timeout_s=30):
    """Until an API process answers /openapi.json; its log as the error if it exits first."""
    def answers():
        if process.poll() is not None:
            raise RuntimeError("the API exited:\n" + process.log_path.read_text(errors="replace")[-2000:])
        try:
            return httpx.get(base_url + "/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
    wait_until(answers, timeout_s, "the API to answer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, fraction):
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def child_env(db_url, extra_env=None) -> dict:
    """The environment of a process of a test fleet: this checkout first on the path, no stray settings."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("BOTFLEET_") and key != "DATABASE_URL"}
    env.update(DATABASE_URL=db_url, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.update(extra_env or {})
    return env


def sigkill_one_running(infos, names, rng):
    """SIGKILL one process, chosen by `rng` among `names` that supervisord (`infos`) shows RUNNING.

    Returns (name, pid), or None when there was none to kill. Only RUNNING ones: a process killed
    within startsecs counts as a failed start, and a few of those in a row leave it FATAL, which
    would test the watchdog instead of the bots.
    """
    candidates = [info for name, info in sorted(infos.items()) if name in names and info["statename"] == "RUNNING"]
    if not candidates:
        return None
    victim = rng.choice(candidates)
    try:
        os.kill(victim["pid"], signal.SIGKILL)
    except ProcessLookupError:
        return None  # it died on its own just now; supervisord shows it soon
    return victim["name"], victim["pid"]


class BotProcesses:
    """Bot processes started with `botfleet bot run`, outside supervisord; stop_all() ends them."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.procs = []

    def start(self, name, config_dir, db_url, extra_env=None) -> subprocess.Popen:
        return self.spawn(name, ["bot", "run", name], config_dir, db_url, extra_env)

    def spawn(self, label, args, config_dir, db_url, extra_env=None) -> subprocess.Popen:
        """`botfleet --config DIR ARGS...` (the API, say), logged to a file named by `label`."""
        log_path = self.log_dir / f"{label}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*BOTFLEET, "--config", str(config_dir), *args], cwd=ROOT,
                                    env=child_env(db_url, extra_env), stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def stop_all(self, timeout_s=15):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Fleet:
    """A real supervisord running the rendered programs (bots and watchdog) of a project's config/."""

    def __init__(self, project: Path, db_url: str, host: str | None = None):
        """`host`: the fleet host this supervisord plays (BOTFLEET_HOST), with a var folder of its own, so
        that one machine can run several hosts of one fleet; None: this machine, var/."""
        self.project = Path(project)
        self.db_url = db_url
        self.config_dir = self.project / "config"
        self.paths = FleetPaths(home=self.project, var=self.project / (f"var-{host}" if host else "var"), host=host)
        self.socket = self.paths.supervisor_socket
        self.proc = None

    @property
    def config(self):
        return load(self.config_dir)

    def start(self, extra_env=None, wait_running=True, timeout_s=60):
        """Start supervisord as `botfleet up --daemon` does; by default wait until every program is RUNNING."""
        self.proc = lifecycle.start_supervisord(self.config, self.db_url, fleet_paths=self.paths,
                                                extra_env={**child_env(self.db_url), **(extra_env or {})})
        if wait_running:
            lifecycle.wait_running(self.config, self.paths, timeout_s)
        return self

    @property
    def rpc(self):
        return supervisor.client(self.socket).supervisor

    def states(self) -> dict:
        """Process name -> state; {} while supervisord does not answer."""
        return supervisor.process_states(self.socket) or {}

    def processes(self) -> dict:
        """Process name -> supervisord's whole info; {} while supervisord does not answer."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"supervisord exited with code {self.proc.returncode}")
        try:
            return {info["name"]: info for info in self.rpc.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Error):
            return {}

    def info(self, group, name):
        return self.rpc.getProcessInfo(f"{group}:{name}")

    def check(self):
        """`botfleet check` against this fleet: (exit code, line)."""
        result = subprocess.run([*BOTFLEET, "--config", str(self.config_dir), "check"], cwd=ROOT,
                                env=child_env(self.db_url), capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout.strip()

    def log_tail(self, name, chars=1500):
        path = self.paths.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop(self, timeout_s=60):
        """Stop as `botfleet down` does: return once supervisord and every bot have exited."""
        if self.proc is None:
            return
        try:
            lifecycle.shutdown(self.paths, timeout_s)
        except Exception:
            self.proc.terminate()  # supervisord still stops its programs on SIGTERM
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
