"""The fleet's connection budget: what a host's fleet needs against what the server has available.

The verdict is a pure function, table-tested here. Its reading of the server (slots, and whose connections
are whose) runs on servers of these tests' own, so no other test's connections move the figures. A fleet of
60 bots is refused by `botfleet up` and `config check --database` against max_connections=50, warned about
at 80, and runs once the embedded server restarts with the size it is given for the fleet.
"""

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo

from common.config.load import load
from common.config.paths import FleetPaths
from common.fleet import supervisor
from common.store import connections
from common.store.connect import connect
from common.store.connections import FleetNeed, ServerSlots, budget, embedded_max_connections, fleet_need
from common.store.migrate import upgrade
from common.store.server import start_embedded, stop_embedded
from tests.conftest import THREE_STATES, write_config
from tests.harness import BOTFLEET, ROOT, free_port, wait_until
from watchdog.budget import ConnectionBudgetWatch
from watchdog.collector import FleetCollector, registry_for

SIXTY_STATES = ("lifetime: 1h\nnotification_frequency: 10m\nretention: 1d\nstates:\n"
                + "".join(f"  - {{code: {code}, name: s{code}}}\n" for code in range(1, 60))
                + "  - {code: 60, name: end, final: true}\n"
                + "transitions: [" + ", ".join(f"[{code}, {code + 1}]" for code in range(1, 60)) + "]\n")


# -- the verdict --------------------------------------------------------------------------------


def slots(max_connections, superuser_reserved=3, reserved=0, used_by_others=0):
    return ServerSlots(max_connections, superuser_reserved, reserved, used_by_others)


@pytest.mark.parametrize("need, server, level, needed, available", [
    # 60 bots x 1 + the watchdog's 2 + 5 for commands: 67, where 50 - 3 reserved leaves 47.
    (FleetNeed(60, 0), slots(50), "refused", 67, 47),
    (FleetNeed(60, 0), slots(80), "warning", 67, 77),  # 87% of what is available
    (FleetNeed(60, 0), slots(200), "ok", 67, 197),
    # Exactly what is available fits, with the warning; exactly 80% of it is no warning yet.
    (FleetNeed(60, 0), slots(70), "warning", 67, 67),
    (FleetNeed(33, 0), slots(53), "ok", 40, 50),
    (FleetNeed(34, 0), slots(53), "warning", 41, 50),
    # PostgreSQL 16's reserved_connections count as reserved too.
    (FleetNeed(60, 0), slots(80, reserved=11), "refused", 67, 66),
    # Other hosts' and clients' connections are not available; more of them than slots is none available.
    (FleetNeed(10, 0), slots(100, used_by_others=80), "warning", 17, 17),
    (FleetNeed(10, 0), slots(100, used_by_others=81), "refused", 17, 16),
    (FleetNeed(1, 0), slots(10, used_by_others=50), "refused", 8, 0),
    # The API's process holds both of its pools at most (8 + 16) and the console's listener.
    (FleetNeed(3, 1), slots(100), "ok", 3 + 25 + 2 + 5, 97),
    (FleetNeed(3, 2, watchdogs=1), slots(60), "refused", 3 + 50 + 2 + 5, 57),
])
def test_the_verdict_compares_the_need_with_max_connections_less_reserved_and_others(need, server, level, needed,
                                                                                     available):
    verdict = budget(need, server)
    assert (verdict.level, verdict.needed, verdict.available) == (level, needed, available)
    assert verdict.fits == (level != "refused")


def test_a_refusal_names_every_number():
    message = budget(FleetNeed(60, 1), slots(50, reserved=2, used_by_others=7)).message
    assert message.startswith("this host's fleet needs 92 PostgreSQL connections but only 38 are available: "
                              "max_connections 50 - 5 reserved (superuser_reserved_connections 3, "
                              "reserved_connections 2) - 7 used by other hosts and clients = 38 available; "
                              "needed: 60 bot process(es) x 1, the API 25 (pools of 8 and 16, the console's listener 1), the watchdog 2, "
                              "5 for commands and operators."), message


def test_the_warning_above_80_percent_says_the_share():
    verdict = budget(FleetNeed(60, 0), slots(80))
    assert verdict.level == "warning"
    assert verdict.message.startswith("this host's fleet needs 67 of 77 available connections (87%, above 80%): "
                                      "max_connections 80 - 3 reserved"), verdict.message
    fine = budget(FleetNeed(60, 0), slots(100))
    assert fine.level == "ok" and "above" not in fine.message


def test_the_api_pools_are_the_budgets_figures():
    """One source: the API opens its pools with the sizes the budget counts."""
    import api.app

    assert api.app.connections is connections
    assert connections.API_CONNECTIONS == connections.API_POOL_MAX + connections.API_AIO_POOL_MAX + 1 == 25


# -- the need, from the config -------------------------------------------------------------------


def test_a_hosts_need_counts_its_bots_replicas_the_api_and_the_watchdog(tmp_path):
    folder = write_config(tmp_path / "config", types={"testms/three": THREE_STATES},
                          bots={"testms-three-1-a": "handler: tests.handlers:advance\nreplicas: 3\n"},
                          fleet_extra=f"api:\n  listen: 127.0.0.1:{free_port()}\n")
    config = load(folder)
    need = fleet_need(config)
    # a (3 replicas), b, c, and the API's companions: the webhook and the JOBSWEEPER bots.
    assert (need.bot_processes, need.api_processes, need.watchdogs) == (7, 1, 1)
    assert need.connections == 7 * 1 + 25 + 2 + 5
    assert need.application_names == ("botfleet-api", "botfleet-sweep-1-running", "botfleet-watchdog",
                                      "botfleet-webhook-1-deliver", "testms-three-1-a", "testms-three-2-b",
                                      "testms-three-3-c")
    assert embedded_max_connections(config) == 100  # PostgreSQL's default, when twice the need is less


def test_each_host_needs_its_own_bots_and_the_embedded_server_is_sized_for_all_of_them(tmp_path):
    folder = write_config(tmp_path / "config", types={"big/sixty": SIXTY_STATES},
                          fleet_extra="hosts:\n  h1:\n    bots: [big-sixty-1-*, big-sixty-2-*]\n"
                                      "  h2:\n    bots: ['big-sixty-[3-9]-*', 'big-sixty-??-*']\n")
    config = load(folder)
    assert fleet_need(config, "h1").connections == 2 + 2 + 5
    assert fleet_need(config, "h2").connections == 58 + 2 + 5
    assert "big-sixty-3-s3" not in fleet_need(config, "h1").application_names
    assert embedded_max_connections(config) == 2 * (9 + 65)


# -- the server's figures, on a server of these tests' own ---------------------------------------


@pytest.fixture(scope="module")
def small_server():
    folder = Path(tempfile.mkdtemp(prefix="botfleet-budget-pg-"))
    url = start_embedded(folder / "pgdata", max_connections=20)
    upgrade(url)  # a scrape reads the fleet's tables too
    try:
        yield url
    finally:
        stop_embedded(folder / "pgdata")
        shutil.rmtree(folder, ignore_errors=True)


NEED = FleetNeed(5, 0, application_names=("testms-pipe-1-first", "botfleet-watchdog"))  # 12 connections


@pytest.mark.own_server
def test_connections_of_this_hosts_fleet_are_told_from_other_clients(small_server):
    with connect(small_server, autocommit=True) as check:
        check.execute("DROP ROLE IF EXISTS budget_other")
        check.execute("CREATE ROLE budget_other LOGIN")
        assert connections.read_server(check, NEED) == ServerSlots(20, 3, 0, 0)  # PostgreSQL 18: reserved_connections
        ours = [connect(small_server, application_name=name) for name in
                ("testms-pipe-1-first", "testms-pipe-1-first:listen", "botfleet-watchdog:http")]
        # A stranger, a process this host does not run, and a fleet name under another role.
        others = [connect(small_server, application_name="psql"),
                  connect(small_server, application_name="testms-pipe-2-second"),
                  connect(make_conninfo(small_server, user="budget_other"), application_name="testms-pipe-1-first")]
        try:
            verdict = connections.measure(check, NEED)
            assert verdict.server == ServerSlots(20, 3, 0, len(others))
            assert (verdict.level, verdict.needed, verdict.available) == ("warning", 12, 20 - 3 - 3)
        finally:
            for conn in ours + others:
                conn.close()
        check.execute("DROP ROLE budget_other")


def metric_values(text) -> dict:
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name.startswith("botfleet_connections_")}


@pytest.mark.own_server
def test_the_watchdog_exports_the_budget_at_each_scrape(small_server):
    collector = FleetCollector(lambda: connect(small_server, autocommit=True), fleet_need=NEED)
    values = metric_values(generate_latest(registry_for(collector)).decode())
    assert values == {"botfleet_connections_needed": 12, "botfleet_connections_available": 17,
                      "botfleet_connections_used_by_others": 0, "botfleet_connections_max": 20}
    with connect(small_server, application_name="psql"):
        values = metric_values(generate_latest(registry_for(collector)).decode())
    assert (values["botfleet_connections_available"], values["botfleet_connections_used_by_others"]) == (16, 1)


@pytest.mark.own_server
def test_the_watchdog_logs_a_change_of_verdict_once_and_looks_again_only_after_a_while(small_server, caplog):
    now = [1000.0]
    too_big = ConnectionBudgetWatch(FleetNeed(30, 0), every_s=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="botfleet.watchdog")
    with connect(small_server, autocommit=True) as conn:
        assert too_big.check(conn).level == "refused"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"connections: {budget(FleetNeed(30, 0), slots(20)).message}"]
        assert "needs 37 PostgreSQL connections but only 17 are available" in warnings[0]
        assert too_big.check(conn) is None  # not again within its interval
        now[0] += 60
        assert too_big.check(conn).level == "refused"
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # the same verdict: no news
        too_big.need = FleetNeed(5, 0)
        now[0] += 60
        assert too_big.check(conn).level == "ok"
    assert caplog.records[-1].levelno == logging.INFO and "needs 12 of 17" in caplog.records[-1].getMessage()


# -- botfleet up and config check --database, with 60 bots ---------------------------------------


@pytest.fixture
def sixty_bots(tmp_path):
    # Sixty bots start at once on a machine of a few cores: the watchdog gives them time to register, and a
    # minute of silence before a hung verdict, so that it does not kill slow starters this test waits for.
    write_config(tmp_path / "config", types={"big/sixty": SIXTY_STATES},
                 bot_defaults={"threads": 1, "sweep_interval": "1m"},
                 fleet_extra=f"watchdog:\n  listen: 127.0.0.1:{free_port()}\n  start_grace: 5m\n"
                             f"  hung_after_missed_heartbeats: 120\n")
    # The embedded server runs as its own user when tests run as root: its folder lies outside pytest's, whose
    # parent another pytest session may close to others (0700) at any time.
    var = Path(tempfile.mkdtemp(prefix="botfleet-budget-var-"))
    paths = FleetPaths(home=tmp_path, var=var)
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "PYTHONPATH": str(ROOT),
           "BOTFLEET_VAR": str(var)}
    yield tmp_path, paths, env
    subprocess.run([*BOTFLEET, "--config", str(tmp_path / "config"), "down"], cwd=ROOT, env=env,
                   capture_output=True, timeout=180)
    stop_embedded(paths.pgdata)
    shutil.rmtree(var, ignore_errors=True)


def botfleet(project_dir, env, *args, timeout=180):
    return subprocess.run([*BOTFLEET, "--config", str(project_dir / "config"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def fleet_processes(paths) -> list:
    """supervisord, the bots and the watchdog of a project: each names its folder or its var folder. The
    embedded server names its data folder, but it is not one of them."""
    marks = (str(paths.home), str(paths.var))
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info["cmdline"] or ()
        if proc.info["name"] != "postgres" and any(mark in part for part in cmdline for mark in marks):
            found.append((proc.info["pid"], " ".join(cmdline)))
    return found


REFUSED_FIGURES = ("this host's fleet needs 67 PostgreSQL connections but only 47 are available: max_connections 50 "
                   "- 3 reserved (superuser_reserved_connections 3, reserved_connections 0) - 0 used by other hosts "
                   "and clients = 47 available; needed: 60 bot process(es) x 1, the watchdog 2, 5 for commands and "
                   "operators")


@pytest.mark.processes
@pytest.mark.own_server
def test_sixty_bots_are_refused_by_a_server_of_50_connections_and_run_on_one_sized_for_them(sixty_bots):
    project_dir, paths, env = sixty_bots
    start_embedded(paths.pgdata, max_connections=50)  # the fleet's own embedded server, started too small

    up = botfleet(project_dir, env, "up", "--daemon")
    assert up.returncode == 78, up.stdout + up.stderr
    assert REFUSED_FIGURES in up.stderr, up.stderr
    assert ("the embedded server runs with max_connections 50: `botfleet down` stops it, and the next start "
            "gives it 134") in up.stderr
    # Nothing started, and nothing written: no supervisord, no bot, not even the schema.
    assert supervisor.process_states(paths.supervisor_socket) is None
    assert fleet_processes(paths) == []
    url = f"postgresql://postgres@/postgres?host={paths.pgdata}"
    with connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('bot_processes') AS t").fetchone()["t"] is None

    check = botfleet(project_dir, env, "config", "check", "--database")
    assert check.returncode == 78, check.stdout + check.stderr
    assert REFUSED_FIGURES in check.stderr, check.stderr

    # Fits, with 10 to spare: `config check --database` passes, with the warning.
    stop_embedded(paths.pgdata)
    start_embedded(paths.pgdata, max_connections=80)
    check = botfleet(project_dir, env, "config", "check", "--database")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "botfleet: warning: this host's fleet needs 67 of 77 available connections (87%, above 80%)" in check.stderr

    # `botfleet down` stops the embedded server; `up` starts it sized for the fleet, and the fleet runs.
    down = botfleet(project_dir, env, "down")
    assert down.returncode == 0 and "embedded database stopped" in down.stdout, down.stdout + down.stderr
    up = botfleet(project_dir, env, "up", "--daemon")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "connections: this host's fleet needs 67 of 131 available connections" in up.stdout, up.stdout
    with connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW max_connections").fetchone()["max_connections"] == "134"
        wait_until(lambda: conn.execute("SELECT count(DISTINCT bot_name) AS n FROM bot_processes "
                                        "WHERE stopped_at IS NULL").fetchone()["n"] == 60, 120, "60 bots to register")
        # Every connection of the running fleet is told as its own: none counts as another client's.
        verdict = connections.measure(conn, fleet_need(load(project_dir / "config")))
        assert verdict.server.used_by_others == 0, verdict.message
    assert len(fleet_processes(paths)) >= 62  # supervisord, the bots and the watchdog: what was absent before
