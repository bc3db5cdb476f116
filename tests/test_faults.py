"""Faults under load, with real processes: bots SIGKILLed every second, PostgreSQL stopped for 10 s.

Both runs end with the same audit: every ticket reached its final state, and every transition of
every ticket appears exactly once in ticket_events.
"""

import random
import time

import psycopg
import pytest

from common.store import clock
from common.store.connect import connect
from common.store.server import start_embedded, stop_embedded
from common.tickets.create import create_tickets
from tests.conftest import THREE_STATES, SupervisedFleet, last_event_id, own_server_database, stays_true, wait_until
from tests.harness import sigkill_one_running

# Faults of processes (kills, stops, supervisord): their SQL is the same on every server, so CI runs
# them against the first server only.
pytestmark = [pytest.mark.processes, pytest.mark.process_faults]

METASERVICE = "flow"
# tests.handlers:slow sleeps payload.sleep_s, then advances.
PACED_BOTS = {"flow-three-1-a": "handler: tests.handlers:slow\n", "flow-three-2-b": "handler: tests.handlers:slow\n"}
EXPECTED_MOVES = [(1, 2), (2, 3)]


def open_count(conn):
    # Each test has a database of its own: every flow ticket in it is one of ours.
    return conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = %s AND closed_at IS NULL",
                        (METASERVICE,)).fetchone()["n"]


def audit(conn, ids):
    """(tickets not final, tickets whose transitions are not exactly 1->2 then 2->3 once each)."""
    not_final = [row["id"] for row in conn.execute(
        "SELECT id FROM tickets WHERE id = ANY(%s) AND (state <> 3 OR closed_at IS NULL) ORDER BY id",
        (ids,)).fetchall()]
    moves = {}
    for row in conn.execute("""
            SELECT ticket_id, from_state, to_state FROM ticket_events
            WHERE ticket_id = ANY(%s) AND kind = 'transitioned' ORDER BY id""", (ids,)).fetchall():
        moves.setdefault(row["ticket_id"], []).append((row["from_state"], row["to_state"]))
    wrong = {tid: moves.get(tid, []) for tid in ids if moves.get(tid, []) != EXPECTED_MOVES}
    return not_final, wrong


def bot_processes(fleet):
    """supervisord's view of the bot programs (the watchdog is in its own group): name -> info."""
    return {info["name"]: info for info in fleet.rpc.getAllProcessInfo() if info["group"] == METASERVICE}


def log_tails(fleet, names):
    return "\n".join(f"--- {name}.log\n{fleet.log_tail(name)}" for name in names)


# -- a: SIGKILL ------------------------------------------------------------------------------------

TICKETS = 5000
KILL_EVERY_S = 1.0
MAX_KILLS = 40
KILL_PHASE_S = 60
COMPLETION_TIMEOUT_S = 120


def test_sigkill_a_random_bot_every_second_while_5000_tickets_flow(supervised, conn):
    # 10 ms per handler and 4 threads: about 400 tickets a second per bot, so the flow lasts long
    # enough (15 s or more) for a kill every second to land while every bot holds a full batch.
    fleet = supervised(types={f"{METASERVICE}/three": THREE_STATES}, bots=PACED_BOTS,
                       bot_defaults={"lease": "2s", "sweep_interval": "1s", "batch_size": 32}).start()
    ids = create_tickets(conn, fleet.config, METASERVICE, "three",
                                [{"n": n, "sleep_s": 0.01} for n in range(TICKETS)])
    rng = random.Random(20261129)  # seeded: the victims, and so the assertion that every bot was hit, repeat
    kills = []  # (program, pid)
    started = time.monotonic()
    next_kill = started
    # Poll for completion every 50 ms; once a second, SIGKILL one bot that supervisord has RUNNING.
    while open_count(conn) and len(kills) < MAX_KILLS and time.monotonic() - started < KILL_PHASE_S:
        if time.monotonic() >= next_kill:
            next_kill += KILL_EVERY_S
            infos = bot_processes(fleet)
            killed = sigkill_one_running(infos, set(infos), rng)
            if killed:
                kills.append(killed)
        time.sleep(0.05)  # poll interval
    killing_s = time.monotonic() - started
    still_open = open_count(conn)
    print(f"{len(kills)} SIGKILLs in {killing_s:.1f}s, {still_open} tickets open when the kills stopped: {kills}")

    wait_until(lambda: open_count(conn) == 0, COMPLETION_TIMEOUT_S,
             lambda: f"all {TICKETS} tickets to close (still open: {open_count(conn)}, after {len(kills)} kills)\n"
             + log_tails(fleet, bot_processes(fleet)))
    print(f"all {TICKETS} tickets final {time.monotonic() - started:.1f}s after they were created")

    not_final, wrong = audit(conn, ids)
    assert not_final == []
    assert wrong == {}, f"{len(wrong)} ticket(s) with missing or duplicated transitions, e.g. " \
                        f"{dict(list(wrong.items())[:5])}"
    # The kills (all made while tickets were open) were many and hit every bot.
    assert len(kills) >= 5, kills
    assert {name for name, _ in kills} == set(bot_processes(fleet)), kills
    # The fleet is whole again: every bot RUNNING under a pid that was never killed.
    killed_pids = {pid for _, pid in kills}
    wait_until(lambda: all(info["statename"] == "RUNNING" and info["pid"] not in killed_pids
                           for info in bot_processes(fleet).values()), 30, "every bot to be RUNNING again")
    rescued = conn.execute("SELECT count(*) AS n FROM ticket_events WHERE kind = 'claimed' AND ticket_id = ANY(%s)",
                           (ids,)).fetchone()["n"]
    # Bots were killed while holding tickets: others took those over, and said so.
    assert rescued > 0
    print(f"{rescued} ticket(s) taken over from a killed process")


# -- b: PostgreSQL down for 10 s ------------------------------------------------------------------

OUTAGE_S = 10
OUTAGE_TICKETS = 1000
@pytest.mark.own_server
def test_database_down_for_10_seconds_mid_run_loses_and_duplicates_nothing(tmp_path):
    with own_server_database(tmp_path, "botfleet_outage") as (pgdata, server_url, url):
        # 50 ms per handler and 4 threads: about 80 tickets a second per bot, so 1,000 tickets are
        # still flowing when the server goes away.
        fleet = SupervisedFleet(tmp_path / "project", url, types={f"{METASERVICE}/three": THREE_STATES},
                                bots=PACED_BOTS,
                                bot_defaults={"lease": "2s", "sweep_interval": "1s", "batch_size": 32})
        try:
            fleet.start()
            _outage_run(fleet, pgdata, server_url, url)
        finally:
            fleet.stop()


def _outage_run(fleet, pgdata, server_url, url):
    wait_until(lambda: fleet.check()[0] == 0, 30, "`botfleet check` to be OK before the outage")
    # What happened before the fleet was healthy is start-up, not the outage.
    pids = {name: info["pid"] for name, info in bot_processes(fleet).items()}
    watchdog_pid = fleet.info("watchdog", "watchdog")["pid"]
    with connect(url, autocommit=True) as conn:
        events_before = last_event_id(conn)
        ids = create_tickets(conn, fleet.config, METASERVICE, "three",
                                    [{"n": n, "sleep_s": 0.05} for n in range(OUTAGE_TICKETS)])
        wait_until(lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = %s AND state = 3",
                                        (METASERVICE,)).fetchone()["n"] >= 50, 30, "the first tickets to close")
        in_flight = open_count(conn)
    assert in_flight > 0

    stop_embedded(pgdata)
    down_since = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect(url).close()
    seen = []

    def check_says_database_down():
        seen.append(fleet.check())
        return seen[-1][0] != 0 and "database" in seen[-1][1]
    wait_until(check_says_database_down, OUTAGE_S - 1, "`botfleet check` to report the database down")
    print(f"while down: {seen[-1]}")
    # The server stays down for the whole outage, and `check` keeps saying so while it lasts.
    stays_true(check_says_database_down, max(0.0, OUTAGE_S - (time.monotonic() - down_since)),
               lambda: f"`botfleet check` reporting the database down (it said {seen[-1]})")
    assert start_embedded(pgdata) == server_url
    print(f"server down for {time.monotonic() - down_since:.1f}s")

    with connect(url, autocommit=True) as conn:
        back_at = clock.now(conn)
        wait_until(lambda: open_count(conn) == 0, 120,
                 lambda: f"all {OUTAGE_TICKETS} tickets to close after the outage (still open: "
                 f"{open_count(conn)})\n" + log_tails(fleet, pids))
        not_final, wrong = audit(conn, ids)
        assert not_final == []
        assert wrong == {}, f"{len(wrong)} ticket(s) with missing or duplicated transitions, e.g. " \
                            f"{dict(list(wrong.items())[:5])}"

        # Every bot is connected again, on its one connection, and LISTENs on it.
        def listening():
            return {row["application_name"] for row in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()").fetchall()}
        wait_until(lambda: set(pids) <= listening(), 30,
                 lambda: f"every bot to connect again (connected: {sorted(listening())})")

    # The watchdog reconnected on its own: same process, and its checks make the fleet healthy again.
    wait_until(lambda: fleet.check()[0] == 0, 60, "`botfleet check` to be OK again after the outage")
    assert fleet.info("watchdog", "watchdog")["pid"] == watchdog_pid

    # So did the bots: same processes, nothing restarted.
    with connect(url, autocommit=True) as conn:
        actions = conn.execute("SELECT bot, action, reason FROM watchdog_events WHERE action <> 'health' "
                               "AND id > %s ORDER BY id", (events_before,)).fetchall()
    now_pids = {name: info["pid"] for name, info in bot_processes(fleet).items()}
    restarted = sorted(name for name in pids if now_pids.get(name) != pids[name])
    with connect(url, autocommit=True) as conn:
        # Each live process's own registration heartbeats again after the server came back.
        heartbeating = {r["pid"] for r in conn.execute(
            "SELECT pid FROM bot_processes WHERE stopped_at IS NULL AND heartbeat_at > %s", (back_at,)).fetchall()}
    assert {pids[name] for name in set(pids) - set(restarted)} <= heartbeating, log_tails(fleet, list(pids))
    # Stale heartbeats during the outage are not hangs: the watchdog restarted nothing.
    assert restarted == [] and actions == [], (
        f"bots restarted after the outage: {pids} -> {now_pids}; watchdog actions: {actions}\n"
        + log_tails(fleet, [*pids, "watchdog"]))
