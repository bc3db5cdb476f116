"""What the shipped fleet costs when it has nothing to do, and how many server connections its bots hold.

The shipped config/ (every bot, the API, the watchdog) runs under its own supervisord against a database of
the bench's server, on free ports. Once `botfleet check` is OK and every process has heartbeated twice, the
CPU time of supervisord and everything it runs, and of the PostgreSQL server (the postmaster and all its
processes: backends, checkpointer, WAL writer, autovacuum), is read from /proc before and after a quiet
window: idle_cpu_pct is that time as a percentage of one core. connections_per_bot counts the server
connections of the fleet's bots (by application_name) per bot process.
"""

import os
import shutil
import time
from collections import Counter
from pathlib import Path

from common.store.connect import connect
from common.store.sync import sync_config
from tests.harness import ROOT, Fleet, free_port, wait_until, with_dbname

SETTLE_HEARTBEATS = 2  # every process heartbeats this often before the window opens: start-up is not idle


def _cpu_ns(pid) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _children() -> dict:
    """pid -> parent pid, for every process on the machine."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def _tree(root_pid, parents) -> set:
    tree, grew = {root_pid}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _postmaster_pid(conn) -> int:
    """The server's postmaster: the parent of this connection's backend (the server must run on this machine)."""
    backend = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    return _children()[backend]


def shipped_project(tmp: Path) -> Path:
    """A copy of the shipped config/ whose API and watchdog listen on free ports."""
    project = tmp / "shipped"
    shutil.copytree(ROOT / "config", project / "config")
    fleet_yaml = project / "config" / "fleet.yaml"
    text = fleet_yaml.read_text()
    for shipped_listen in ("127.0.0.1:9108", "127.0.0.1:8080"):
        text = text.replace(shipped_listen, f"127.0.0.1:{free_port()}")
    fleet_yaml.write_text(text)
    return project


def measure_idle(server_url, tmp: Path, window_s: float, say=print) -> dict:
    with connect(server_url, autocommit=True) as admin:
        admin.execute('CREATE DATABASE "botfleet_bench_idle"')
        postmaster = _postmaster_pid(admin)
    url = with_dbname(server_url, "botfleet_bench_idle")
    from common.store.migrate import upgrade

    fleet = Fleet(shipped_project(tmp), url)
    upgrade(url, fleet.config)
    with connect(url, autocommit=True) as conn:
        sync_config(conn, fleet.config)
    say(f"idle: starting the shipped fleet ({len(fleet.config.bots)} bots, the watchdog) under supervisord")
    fleet.start(timeout_s=120)
    try:
        wait_until(lambda: fleet.check()[0] == 0, 120, lambda: f"`botfleet check` to be OK: {fleet.check()}")
        interval_s = fleet.config.heartbeat_interval_s
        with connect(url, autocommit=True, application_name="bench") as conn:
            since = conn.execute("SELECT statement_timestamp() AS at").fetchone()["at"]
            wait_until(lambda: conn.execute(
                "SELECT bool_and(heartbeat_at > %s + %s * interval '1 second') AS settled FROM bot_processes "
                "WHERE stopped_at IS NULL", (since, SETTLE_HEARTBEATS * interval_s)).fetchone()["settled"],
                (SETTLE_HEARTBEATS + 4) * interval_s, "every process to heartbeat after start-up")
            apps = Counter(r["application_name"] for r in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"))
        bots = [spec.name for spec in fleet.config.bots.values() if spec.duty != "api"]  # the API keeps pools
        processes = sum(spec.replicas for spec in fleet.config.bots.values() if spec.name in bots)
        bot_connections = sum(apps[name] for name in bots)
        say(f"idle: {bot_connections} connection(s) of {processes} bot process(es); all: {dict(apps)}")

        parents = _children()
        pids = _tree(fleet.proc.pid, parents) | _tree(postmaster, parents)
        before = {pid: _cpu_ns(pid) for pid in pids}
        say(f"idle: measuring {len(pids)} processes for {window_s:.0f}s")
        time.sleep(window_s)  # the quiet window itself: nothing is polled meanwhile, by design
        after = {pid: _cpu_ns(pid) for pid in pids}
        used_ns = sum(after[p] - before[p] for p in pids if before[p] is not None and after[p] is not None)
    finally:
        fleet.stop()
    return {"idle_cpu_pct": 100.0 * used_ns / 1e9 / window_s, "connections_per_bot": bot_connections / processes}


def main():
    """`python bench/idle.py [seconds]`: this figure alone, on an embedded server of its own."""
    import sys
    import tempfile

    from common.store.server import start_embedded, stop_embedded

    window_s = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    tmp = Path(tempfile.mkdtemp(prefix="botfleet-bench-idle-"))
    try:
        figures = measure_idle(start_embedded(tmp / "pgdata"), tmp, window_s)
    finally:
        stop_embedded(tmp / "pgdata")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"idle_cpu_pct={figures['idle_cpu_pct']:.2f}")
    print(f"connections_per_bot={figures['connections_per_bot']:.2f}")


if __name__ == "__main__":
    main()
