"""Time limits on every connection and call: the API's, the watchdog's and the CLI's sessions give up on a lock
or a stuck statement instead of waiting behind it; supervisord calls time out; a move by hand that waits for
a bot holds no pooled connection while it waits; and with the database down, the API answers 503, not 500.

Each test makes the fault real: a person's transaction holding a row or a table, a unix socket that accepts
and never answers, a real API with twenty requests waiting at once, a real PostgreSQL server stopped."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.access.tokens import create_token
from common.config.builtin import API_BOT
from common.config.load import load
from common.config.names import hostname
from common.fleet import supervisor
from common.store.connect import connect
from common.store.server import start_embedded, stop_embedded
from common.store.sync import sync_config
from common.tickets.create import create_ticket
from tests.conftest import (
    BOTFLEET,
    PIPELINE_TYPE,
    ROOT,
    free_port,
    own_server_database,
    stays_true,
    wait_until,
    write_config,
)
from tests.harness import child_env
from tests.test_api import error_of, serve_api
from tests.test_jobs import JOB_TYPE

# Test fleets heartbeat every 500 ms and call a process hung after 3 missed heartbeats; their watchdogs
# check every 250 ms and are stale after 3 s (tests/conftest.py).
HUNG_AFTER_S = 1.5
STALE_AFTER_S = 3.0
WATCHDOG_SETTINGS = "  check_interval: 250ms\n  fatal_retry_backoff: 1s\n  stale_after: 3s\n"
FIRST, SECOND = "testms-pipe-1-first", "testms-pipe-2-second"
LEASE_WAIT_S = 5.0  # common/tickets/manual.py: how long a move by hand waits for a ticket to come free
EPOCH_YEAR = 1970  # a ticket freed for its bot is due since the epoch


@contextlib.contextmanager
def held(db_url, statement, params=()):
    """A person's open transaction in psql: `statement` run (a SELECT ... FOR UPDATE, a LOCK TABLE), its locks
    held until the block ends, then rolled back."""
    with connect(db_url) as person:
        person.execute(statement, params)
        try:
            yield
        finally:
            person.rollback()


@contextlib.contextmanager
def silent_supervisord():
    """The path of a unix socket that accepts connections and never answers, as a SIGSTOPped supervisord
    looks to a client: the kernel queues the connection, nobody reads the request."""
    folder = tempfile.mkdtemp(prefix="bf-silent-")  # short: a unix socket's path has a small limit
    path = os.path.join(folder, "supervisor.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(64)
        yield path
    finally:
        server.close()  # what still waits on it fails now
        shutil.rmtree(folder, ignore_errors=True)


def in_thread(call, within_s):
    """call()'s result, or the exception it raised; a test failure if it is still waiting after `within_s`."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    if thread.is_alive():
        pytest.fail(f"still waiting after {within_s}s")
    return outcome[0]


def watchdog_ages_s(conn) -> tuple:
    """(since the watchdog's last heartbeat, since its last completed check), by the server's clock."""
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS beat_s, "
                       "extract(epoch FROM clock_timestamp() - last_check_at)::float8 AS check_s "
                       "FROM watchdogs ORDER BY heartbeat_at DESC LIMIT 1").fetchone()
    return (row["beat_s"], row["check_s"]) if row else (None, None)


def watchdog_fresh(conn) -> bool:
    """The watchdog heartbeated and completed a check within `stale_after`: `botfleet check` finds it fresh."""
    beat_s, check_s = watchdog_ages_s(conn)
    return beat_s is not None and check_s is not None and beat_s < STALE_AFTER_S and check_s < STALE_AFTER_S


def run_watchdog(tmp_path, db_url, conn, processes, extra_env=None):
    """`botfleet watchdog run` outside supervisord, on the test pipeline's config; until it has checked."""
    folder = write_config(tmp_path / "config",
                          fleet_extra=f"watchdog:\n  listen: 127.0.0.1:{free_port()}\n{WATCHDOG_SETTINGS}")
    sync_config(conn, load(folder))
    watchdog = processes.spawn("watchdog", ["watchdog", "run"], folder, db_url, extra_env)
    wait_until(lambda: watchdog.poll() is None and watchdog_fresh(conn), 30,
               lambda: f"the watchdog to check\n{watchdog.log_path.read_text(errors='replace')[-2000:]}")
    return watchdog


def health_ages_s(conn) -> dict:
    """Bot -> seconds since this host's watchdog last wrote its verdict on it."""
    return {row["bot_name"]: row["age_s"] for row in conn.execute(
        "SELECT bot_name, extract(epoch FROM clock_timestamp() - at)::float8 AS age_s FROM bot_health "
        "WHERE host = %s", (hostname(),))}


# -- supervisord --------------------------------------------------------------------------------------------

def test_a_supervisord_that_accepts_and_never_answers_fails_each_call_within_its_timeout():
    with silent_supervisord() as path:
        started = time.monotonic()
        outcome = in_thread(lambda: supervisor.client(path, timeout_s=1.0).supervisor.getAllProcessInfo(), 15)
        assert isinstance(outcome, TimeoutError), outcome
        assert time.monotonic() - started < 3
        # What `up`, `down` and `status` ask: "not running", not a command that hangs.
        assert in_thread(lambda: supervisor.process_states(path, timeout_s=1.0), 15) is None


@pytest.mark.processes
@pytest.mark.process_faults
def test_a_watchdog_whose_supervisord_never_answers_keeps_checking(tmp_path, db_url, conn, processes):
    with silent_supervisord() as path:
        watchdog = run_watchdog(tmp_path, db_url, conn, processes, {"SUPERVISOR_SERVER_URL": f"unix://{path}"})
        # Each check waits for supervisord at most half of stale_after, then judges by heartbeats alone.
        stays_true(lambda: watchdog_fresh(conn), 5, lambda: f"the watchdog fresh (ages {watchdog_ages_s(conn)})")
        reason = conn.execute("SELECT reason FROM bot_health WHERE bot_name = %s", (FIRST,)).fetchone()["reason"]
        assert "supervisord not reachable" in reason
        assert watchdog.poll() is None


# -- the watchdog's session ---------------------------------------------------------------------------------

@pytest.mark.processes
@pytest.mark.process_faults
def test_a_row_of_one_bot_locked_by_a_person_leaves_the_watchdog_checking_the_others(tmp_path, db_url, conn,
                                                                                       processes):
    run_watchdog(tmp_path, db_url, conn, processes)
    others = set(health_ages_s(conn)) - {FIRST}
    assert others
    with held(db_url, "SELECT * FROM bot_health WHERE bot_name = %s FOR UPDATE", (FIRST,)):
        # Its verdict on that bot waits for the lock only until lock_timeout; the rest of each check goes on.
        def checking():
            ages = health_ages_s(conn)
            return watchdog_fresh(conn) and all(ages[bot] < STALE_AFTER_S for bot in others)
        stays_true(checking, 8, lambda: f"the watchdog checking (ages {watchdog_ages_s(conn)}, "
                                        f"verdicts {health_ages_s(conn)})")
    wait_until(lambda: health_ages_s(conn)[FIRST] < 1.0, 10, "the locked bot judged again")


@pytest.mark.processes
@pytest.mark.process_faults
def test_a_dead_process_ticket_locked_by_a_person_does_not_stall_the_watchdog(supervised, conn):
    """The watchdog retires a dead process at once; the ticket it held, locked by a person for 30 s, is freed
    once the lock goes, and meanwhile the watchdog heartbeats and judges (and restarts) the other bots."""
    # The ticket's lease is long, so only the watchdog's retiring can make it due again within the test.
    fleet = supervised(bots={FIRST: "handler: tests.handlers:slow\nlease: 2m\n"}).start()
    wait_until(lambda: watchdog_fresh(conn) and fleet.check()[0] == 0, 30, "the fleet to be healthy")
    ticket_id = create_ticket(conn, fleet.config, "testms", "pipe", {"sleep_s": 600})

    def holder():
        return conn.execute("SELECT lease_owner FROM tickets WHERE id = %s", (ticket_id,)).fetchone()["lease_owner"]
    wait_until(lambda: (holder() or "").startswith(FIRST), 30, "the first bot to claim the ticket")
    dead = fleet.info("testms", FIRST)["pid"]

    def due_year():
        return conn.execute("SELECT extract(year FROM due_at)::int AS y FROM tickets WHERE id = %s",
                            (ticket_id,)).fetchone()["y"]

    def registration_retired():
        return conn.execute("SELECT stopped_at IS NOT NULL AS retired FROM bot_processes WHERE bot_name = %s "
                            "AND pid = %s", (FIRST, dead)).fetchone()["retired"]

    with held(fleet.db_url, "SELECT * FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)):
        # The process dies with the ticket in hand, and supervisord does not start it again (it was being
        # stopped): only the watchdog can retire its registration and free its ticket.
        os.kill(dead, signal.SIGSTOP)
        fleet.rpc.stopProcess(f"testms:{FIRST}", False)
        os.kill(dead, signal.SIGKILL)
        frozen = fleet.info("testms", SECOND)["pid"]
        os.kill(frozen, signal.SIGSTOP)  # another bot hangs meanwhile: the watchdog must still see to it
        lock_until = time.monotonic() + 30
        wait_until(registration_retired, 10, "the watchdog to retire the dead process")
        stays_true(lambda: watchdog_fresh(conn), lock_until - time.monotonic(),
                   lambda: f"the watchdog fresh (ages {watchdog_ages_s(conn)})")
        restarts = [row["reason"] for row in conn.execute(
            "SELECT reason FROM watchdog_events WHERE bot = %s AND action = 'restart'", (SECOND,))]
        assert any(reason.startswith("hung:") and f"(pid {frozen})" in reason for reason in restarts), restarts
        assert due_year() > EPOCH_YEAR  # not freed while locked...
    wait_until(lambda: due_year() == EPOCH_YEAR, 10, "the ticket to be freed once the lock is gone")  # ...but then


# -- the API ------------------------------------------------------------------------------------------------

@pytest.mark.processes
def test_the_api_gives_up_on_a_lock_or_a_stuck_statement_instead_of_waiting(tmp_path, db_url, conn, processes):
    api = serve_api(tmp_path, db_url, conn, processes)
    with api.client() as client:
        ticket = client.post("/tickets", json={"metaservice": "testms", "type": "pipe", "payload": {}}).json()
        url = f"/tickets/{ticket['id']}"
        # A table locked (a migration, say): a read gives up after lock_timeout, with 503 and when to retry.
        with held(db_url, "LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE"):
            started = time.monotonic()
            response = client.get(url, timeout=10)
            assert error_of(response, 503)["code"] == "busy" and response.headers["Retry-After"]
            assert time.monotonic() - started < 3
        # The ticket's row locked by a person: a move by hand tries again within its wait, then says so.
        with held(db_url, "SELECT * FROM tickets WHERE id = %s FOR UPDATE", (ticket["id"],)):
            started = time.monotonic()
            refused = error_of(client.patch(url, json={"payload": {"x": 1}}, timeout=20), 409)
            assert "locked by another session" in refused["message"]
            assert LEASE_WAIT_S - 1 <= time.monotonic() - started < LEASE_WAIT_S + 3
        assert client.patch(url, json={"payload": {"x": 1}}).json()["payload"] == {"x": 1}
        # A statement that runs on (here a trigger that sleeps) is cancelled after statement_timeout.
        conn.execute("""CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN IF NEW.payload ? 'stall' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$""")
        conn.execute("CREATE TRIGGER stall BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION stall()")
        started = time.monotonic()
        response = client.post("/tickets", json={"metaservice": "testms", "type": "pipe", "payload": {"stall": 1}},
                               timeout=20)
        assert error_of(response, 503)["code"] == "database_timeout"
        assert time.monotonic() - started < 5


@pytest.mark.processes
def test_twenty_moves_by_hand_waiting_for_a_bot_leave_the_api_heartbeating_and_answering(tmp_path, db_url, conn,
                                                                                        processes):
    api = serve_api(tmp_path, db_url, conn, processes, bots={FIRST: "handler: tests.handlers:slow\n"})
    processes.start(FIRST, api.config_dir, db_url)
    with api.client() as client:
        ticket = client.post("/tickets", json={"metaservice": "testms", "type": "pipe",
                                               "payload": {"sleep_s": 120}}).json()
    url = f"/tickets/{ticket['id']}"
    wait_until(lambda: (conn.execute("SELECT lease_owner FROM tickets WHERE id = %s",
                                     (ticket["id"],)).fetchone()["lease_owner"] or "").startswith(FIRST),
               30, "the bot to hold the ticket")
    # Tokens the API has not seen: each probe's token check goes to the database.
    fresh = iter([create_token(conn, f"probe{n}", "read") for n in range(100)])

    def move(n):
        started = time.monotonic()
        with api.client() as mover:
            response = mover.patch(url, json={"payload": {"n": n}}, timeout=30)
        return response, time.monotonic() - started

    def api_heartbeat_age_s():
        return conn.execute("SELECT extract(epoch FROM clock_timestamp() - max(heartbeat_at))::float8 AS age_s "
                            "FROM bot_processes WHERE bot_name = %s AND stopped_at IS NULL",
                            (API_BOT,)).fetchone()["age_s"]

    heartbeat_ages, answer_s = [], []
    with ThreadPoolExecutor(20) as pool, api.client() as reader:
        moves = [pool.submit(move, n) for n in range(20)]
        while not all(m.done() for m in moves):
            heartbeat_ages.append(api_heartbeat_age_s())
            for path, token in ((url, None), ("/tickets?limit=1", next(fresh))):
                started = time.monotonic()
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                assert reader.get(path, headers=headers, timeout=30).status_code == 200
                answer_s.append(time.monotonic() - started)
            time.sleep(0.1)  # poll interval
        results = [m.result() for m in moves]
    # Every move waited its whole wait for the bot, and was refused, all at once with the probes.
    for response, waited_s in results:
        assert "being processed by" in error_of(response, 409)["message"]
        assert waited_s >= LEASE_WAIT_S - 1
    assert len(answer_s) >= 10
    assert max(heartbeat_ages) < HUNG_AFTER_S, heartbeat_ages
    assert max(answer_s) < 1.5, sorted(answer_s)[-5:]


@pytest.mark.processes
@pytest.mark.process_faults
@pytest.mark.own_server
def test_with_the_database_down_every_route_answers_503_in_the_error_shape(tmp_path, processes):
    with own_server_database(tmp_path, "botfleet_down") as (pgdata, server_url, url):
        with connect(url, autocommit=True) as setup:
            api = serve_api(tmp_path, url, setup, processes, types={"testms/pipe": PIPELINE_TYPE, "testms/job": JOB_TYPE},
                            fleet_extra="jobs:\n  type: testms/job\n")
            unseen = create_token(setup, "unseen", "read")
        _database_down_run(api, pgdata, server_url, unseen)


def _database_down_run(api, pgdata, server_url, unseen):
    with api.client() as client:
        ticket = client.post("/tickets", json={"metaservice": "testms", "type": "pipe", "payload": {}}).json()
        job = client.post("/job", json={"name": "j"}).json()
        # Routes on both pools, writes and reads, moves by hand, jobs, the seed's shape, and a token the API
        # has not seen (its check needs the database before any route runs).
        calls = [("GET", "/tickets", {}), ("GET", f"/tickets/{ticket['id']}", {}),
                 ("GET", f"/tickets/{ticket['id']}/events", {}),
                 ("POST", "/tickets", {"json": {"metaservice": "testms", "type": "pipe", "payload": {}}}),
                 ("POST", "/tickets", {"json": {"metaservice": "testms", "type": "pipe", "payload": {}},
                                       "headers": {"Idempotency-Key": "k1"}}),
                 ("PATCH", f"/tickets/{ticket['id']}", {"json": {"payload": {"x": 1}}}),
                 ("POST", f"/tickets/{ticket['id']}/close", {"json": {"reason": "r"}}),
                 ("POST", "/job", {"json": {"name": "j2"}}), ("GET", f"/job/{job['id']}", {}),
                 ("PATCH", f"/job/{job['id']}", {"json": {"status": "in_progress"}}),
                 ("GET", "/operations", {}), ("GET", "/lock", {}), ("GET", "/types", {}), ("GET", "/workers", {}),
                 ("POST", "/instance/checkIsFinished", {"json": {"instance_token": str(uuid.uuid4())}}),
                 ("GET", "/tickets", {"headers": {"Authorization": f"Bearer {unseen}"}})]
        client.get("/tickets")  # the token's owner cached afresh: the routes themselves meet the outage
        stop_embedded(pgdata)

        def call(method, path, kwargs):
            response = client.request(method, path, timeout=20, **kwargs)
            return method, path, response
        with ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(lambda c: call(*c), calls))
    for method, path, response in answers:
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        body = response.json()
        assert body["error"]["code"] == "database_unavailable" and body["error"]["message"], (method, path, body)
        assert response.headers["Retry-After"], (method, path)
        if path.startswith("/instance"):
            assert body["status"] is False  # the seed's shape, beside the error
    # Once the server is back, so is the API: same process, its pools reconnected.
    assert start_embedded(pgdata) == server_url
    with api.client() as client:
        wait_until(lambda: client.get(f"/tickets/{ticket['id']}").status_code == 200, 30, "the API to answer again")


# -- the CLI ------------------------------------------------------------------------------------------------

@pytest.mark.processes
def test_a_cli_move_of_a_ticket_locked_by_a_person_gives_up_and_says_so(tmp_path, db_url, conn):
    folder = write_config(tmp_path / "config")
    config = load(folder)
    sync_config(conn, config)
    ticket_id = create_ticket(conn, config, "testms", "pipe", {})
    with held(db_url, "SELECT * FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)):
        started = time.monotonic()
        result = subprocess.run([*BOTFLEET, "--config", str(folder), "ticket", "close", str(ticket_id),
                                 "--reason", "withdrawn"], cwd=ROOT, env=child_env(db_url), capture_output=True,
                                text=True, timeout=25)
        assert result.returncode != 0 and "locked by another session" in result.stderr, result.stderr
        assert time.monotonic() - started < LEASE_WAIT_S + 10
