"""A bot process's life: graceful SIGTERM, reconnecting after losing the database, retries, waits."""

import re
import signal

import pytest

from common.config.load import load
from common.store.connect import connect
from common.tickets.create import create_ticket, create_tickets
from common.tickets.read import get_events, get_ticket
from tests.conftest import registered, stays_true, wait_until, write_config

pytestmark = pytest.mark.processes


def state_of(conn, ticket_id):
    return get_ticket(conn, ticket_id).state


def test_sigterm_finishes_the_ticket_in_hand_deregisters_and_exits_0(tmp_path, db_url, conn, processes):
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"})
    cfg = load(folder)
    bot = processes.start("testms-pipe-1-first", folder, db_url, {"BOTFLEET_TEST_MARKS": str(marks)})
    wait_until(registered(conn, 1), 30, "the bot to register")
    ticket_id = create_ticket(conn, cfg, "testms", "pipe", {"sleep_s": 1})
    wait_until(lambda: list(marks.iterdir()), 10, "the handler to start")
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(timeout=10) == 0
    assert state_of(conn, ticket_id) == 2
    row = conn.execute("SELECT stopped_at FROM bot_processes").fetchone()
    assert row["stopped_at"] is not None


def test_bot_reconnects_and_sweeps_after_its_connections_are_killed(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bot_defaults={"sweep_interval": "1h"})
    cfg = load(folder)
    types = cfg
    bot = processes.start("testms-pipe-1-first", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")
    first = create_ticket(conn, types, "testms", "pipe")
    wait_until(lambda: state_of(conn, first) == 2, 10, "the first ticket to move")
    killed = conn.execute("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                          "WHERE application_name LIKE 'testms-pipe-1-first%'").fetchone()["n"]
    assert killed == 1  # its one connection: work and LISTEN
    # Created while the bot may still be reconnecting: its notification can be lost, the sweep after
    # reconnecting is what must find it.
    second = create_ticket(conn, types, "testms", "pipe")
    wait_until(lambda: state_of(conn, second) == 2, 30, "the ticket created during the outage to move")
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'testms-pipe-1-first%'").fetchone()["n"] == 1,
               10, "its connection to be back")
    third = create_ticket(conn, types, "testms", "pipe")
    wait_until(lambda: state_of(conn, third) == 2, 10, "a ticket after reconnecting to move on its notification")
    assert bot.poll() is None


def test_failing_handler_is_retried_then_escalated_once(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:flaky\n"},
                          bot_defaults={"retries": 2, "retry_backoff": "100ms"})
    cfg = load(folder)
    types = cfg
    processes.start("testms-pipe-1-first", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")
    recovers = create_ticket(conn, types, "testms", "pipe", {"fail_times": 2})
    gives_up = create_ticket(conn, types, "testms", "pipe", {"fail_times": 99})
    wait_until(lambda: state_of(conn, recovers) == 2, 20, "the ticket that fails twice to move on")

    def escalated():
        return conn.execute("SELECT id FROM tickets WHERE metaservice = 'botfleet' "
                            "AND (payload->>'ticket_id')::bigint = %s", (gives_up,)).fetchall()
    wait_until(escalated, 20, "an error ticket for the ticket that keeps failing")
    kinds = [e["kind"] for e in get_events(conn, gives_up)]
    assert kinds == ["created", "error", "error", "escalated"]
    # Later sweeps (every second here) leave the parked ticket alone: still exactly one error ticket.
    stays_true(lambda: len(escalated()) == 1, 2.5, "exactly one error ticket")
    wait_until(lambda: conn.execute("SELECT failed FROM bot_processes").fetchone()["failed"] == 5, 5,
               "the bot's heartbeat to report its 5 handler failures")


def test_child_ticket_and_wait_until_ticket(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config",
                          bots={"testms-pipe-1-first": "handler: tests.handlers:spawn_and_wait\n"})
    cfg = load(folder)
    for name in cfg.bots:
        processes.start(name, folder, db_url)
    wait_until(registered(conn, len(cfg.bots)), 30, "the bots to register")
    parent = create_ticket(conn, cfg, "testms", "pipe")
    wait_until(lambda: get_ticket(conn, parent).closed_at is not None, 30, "the parent to finish")
    [child] = conn.execute("SELECT id, closed_at, payload FROM tickets WHERE parent_id = %s", (parent,)).fetchall()
    assert child["closed_at"] is not None
    kinds = [e["kind"] for e in get_events(conn, parent)]
    assert kinds[:4] == ["created", "waited", "woke", "transitioned"]



def test_a_child_has_its_id_while_the_step_is_planned_and_a_retried_step_creates_it_once(tmp_path, db_url, conn,
                                                                                           processes):
    folder = write_config(tmp_path / "config",
                          bots={"testms-pipe-1-first": "handler: tests.handlers:spawn_then_fail_once\n"})
    cfg = load(folder)
    processes.start("testms-pipe-1-first", folder, db_url)
    parent = create_ticket(conn, cfg, "testms", "pipe")
    wait_until(lambda: state_of(conn, parent) == 2, 30, "the parent to move on at its second try")
    children = [r["id"] for r in conn.execute("SELECT id FROM tickets WHERE parent_id = %s", (parent,)).fetchall()]
    assert children == [get_ticket(conn, parent).payload["child_id"]]  # the id the step wrote is the child's
    # The first run's plan had a child of its own, never created: its id stays unused.
    [failed] = [e for e in get_events(conn, parent) if e["kind"] == "error"]
    abandoned = int(re.search(r"planned child (\d+),", failed["detail"]["error"]).group(1))
    assert abandoned != children[0]
    assert conn.execute("SELECT count(*) AS n FROM tickets WHERE id = %s", (abandoned,)).fetchone()["n"] == 0

REFUSE_WRITES = """
CREATE FUNCTION refuse_marked_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payload ? 'refuse_write' THEN
        RAISE EXCEPTION 'refused by the test trigger';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_marked_writes BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION refuse_marked_writes();
"""


def test_an_outcome_that_cannot_be_written_fails_its_step_only_and_the_bot_keeps_running(
        tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:poison\n"},
                          bot_defaults={"retries": 1, "retry_backoff": "100ms", "batch_size": 32})
    cfg = load(folder)
    conn.execute(REFUSE_WRITES)
    causes = {"set": "Object of type set is not JSON serializable", "nul": "NUL character",
              "big": "more than max_payload_bytes (1048576)", "child": "unknown ticket type testms/no_such_type",
              "refused": "refused by the test trigger"}
    # Poisons and good tickets in one transaction, so that they are claimed, and written, together.
    ids = create_tickets(conn, cfg, "testms", "pipe", [{"poison": kind} for kind in causes] + [{}] * 10)
    poisoned, good = dict(zip(causes, ids[:len(causes)], strict=True)), ids[len(causes):]
    bot = processes.start("testms-pipe-1-first", folder, db_url)

    def error_tickets(ticket_id):
        return conn.execute("SELECT id FROM tickets WHERE metaservice = 'botfleet' "
                            "AND (payload->>'ticket_id')::bigint = %s", (ticket_id,)).fetchall()
    wait_until(lambda: all(state_of(conn, t) == 2 for t in good), 30, "the good tickets to move on")
    wait_until(lambda: all(error_tickets(t) for t in poisoned.values()), 30, "an error ticket for every poison")
    for kind, ticket_id in poisoned.items():
        events = get_events(conn, ticket_id)
        assert [e["kind"] for e in events] == ["created", "error", "escalated"], kind
        assert causes[kind] in events[1]["detail"]["error"], (kind, events[1]["detail"])
        assert state_of(conn, ticket_id) == 1 and len(error_tickets(ticket_id)) == 1
    # One process did all of it: it never died.
    assert bot.poll() is None
    assert conn.execute("SELECT count(*) AS n FROM bot_processes").fetchone()["n"] == 1


def test_a_row_lock_held_elsewhere_does_not_stop_heartbeats(tmp_path, db_url, conn, processes):
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"})
    bot = processes.start("testms-pipe-1-first", folder, db_url, {"BOTFLEET_TEST_MARKS": str(marks)})
    wait_until(registered(conn, 1), 30, "the bot to register")
    ticket_id = create_ticket(conn, load(folder), "testms", "pipe", {"sleep_s": 0.5})
    wait_until(lambda: list(marks.iterdir()), 10, "the handler to start")
    hung_after_s = 3 * 0.5  # the watchdog's threshold: 3 missed heartbeats of 500 ms
    # An operator's transaction holds the ticket's row lock while the handler ends and its outcome
    # is due, for many times the hung threshold.
    with connect(db_url) as operator:
        operator.execute("SELECT id FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,))

        def heartbeat_age_s():
            return conn.execute("SELECT extract(epoch FROM now() - heartbeat_at) AS age FROM bot_processes "
                                "WHERE stopped_at IS NULL").fetchone()["age"]
        stays_true(lambda: heartbeat_age_s() < hung_after_s, 8, lambda: f"heartbeats (age {heartbeat_age_s():.1f}s)")
        assert state_of(conn, ticket_id) == 1
        operator.rollback()
    wait_until(lambda: state_of(conn, ticket_id) == 2, 10, "the outcome to be written once the lock is gone")
    assert bot.poll() is None
    assert [e["kind"] for e in get_events(conn, ticket_id)] == ["created", "transitioned"]


def test_a_handler_that_overruns_handler_timeout_fails_its_step_and_sigterm_still_exits_on_time(
        tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"},
                          bot_defaults={"handler_timeout": "1s", "retries": 1, "retry_backoff": "100ms",
                                        "stop_timeout": "2s"})
    bot = processes.start("testms-pipe-1-first", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")
    stuck = create_ticket(conn, load(folder), "testms", "pipe", {"sleep_s": 60})
    wait_until(lambda: [e["kind"] for e in get_events(conn, stuck)][-1:] == ["escalated"], 20,
               lambda: f"two timed-out runs, then an error ticket (events: {get_events(conn, stuck)})")
    events = get_events(conn, stuck)
    assert [e["kind"] for e in events] == ["created", "error", "escalated"]
    assert "ran longer than handler_timeout (1s)" in events[1]["detail"]["error"]
    # The two threads still sleep in their handlers; the other two keep the bot working.
    moves_on = create_ticket(conn, load(folder), "testms", "pipe")
    wait_until(lambda: state_of(conn, moves_on) == 2, 10, "a ticket to move on beside the stuck handlers")
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(timeout=2 + 3) == 0  # stop_timeout plus a few seconds, though handlers still sleep


def test_a_bot_whose_every_thread_is_stuck_exits_to_be_restarted(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"},
                          bot_defaults={"handler_timeout": "1s", "threads": 1, "stop_timeout": "1s"})
    bot = processes.start("testms-pipe-1-first", folder, db_url)
    wait_until(registered(conn, 1), 30, "the bot to register")
    create_ticket(conn, load(folder), "testms", "pipe", {"sleep_s": 60})
    assert bot.wait(timeout=15) == 70  # EX_SOFTWARE: supervisord starts a fresh process


def test_a_ticket_in_a_state_the_config_does_not_have_gets_exactly_one_error_ticket(tmp_path, db_url, conn,
                                                                                   processes):
    folder = write_config(tmp_path / "config")  # sweeps every second
    cfg = load(folder)
    ticket_id = create_ticket(conn, cfg, "testms", "pipe")
    # The code running and the database disagree, e.g. after an update removed state 7.
    conn.execute("UPDATE tickets SET state = 7 WHERE id = %s", (ticket_id,))
    for _ in range(2):  # two processes of the type's initial-state bot: still one error ticket
        processes.start("testms-pipe-1-first", folder, db_url)

    def error_tickets():
        return conn.execute("SELECT payload FROM tickets WHERE metaservice = 'botfleet' "
                            "AND (payload->>'ticket_id')::bigint = %s", (ticket_id,)).fetchall()
    wait_until(error_tickets, 15, "an error ticket for the ticket in state 7")
    stays_true(lambda: len(error_tickets()) == 1, 2.5, "exactly one error ticket")
    assert "state 7 is not a state of testms/pipe" in error_tickets()[0]["payload"]["reason"]
    assert state_of(conn, ticket_id) == 7
    assert [e["kind"] for e in get_events(conn, ticket_id)] == ["created", "escalated"]
