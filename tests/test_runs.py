"""A handler runs once per claim: a bot never claims a ticket it has in hand, each run of a handler is known
by its own number (a late result of a run given up is dropped, the current run's is written), and a slow
on_<kind> message handler runs on the handler pool, where it cannot stop the heartbeat."""

import pytest

from common.notifications.bot_messages import send_bot_notification
from common.store.connect import connect
from common.tickets.create import create_ticket
from common.tickets.read import get_events, get_ticket
from tests.conftest import registered, stays_true, wait_until, write_config

pytestmark = pytest.mark.processes

FIRST = "testms-pipe-1-first"


def starts(marks, ticket_id) -> int:
    return len(list(marks.glob(f"*-{ticket_id}-1-start")))


def start_first_bot(tmp_path, db_url, conn, processes, bot_yaml, **config):
    from common.config.load import load
    from common.store.sync import sync_config

    folder = write_config(tmp_path / "config", bots={FIRST: bot_yaml}, **config)
    cfg = load(folder)
    sync_config(conn, cfg)
    marks = tmp_path / "marks"
    marks.mkdir()
    processes.start(FIRST, folder, db_url, {"BOTFLEET_TEST_MARKS": str(marks)})
    wait_until(registered(conn, 1), 30, "the bot to register")
    return cfg, marks


def test_a_bot_whose_heartbeats_fall_a_lease_behind_does_not_run_its_ticket_again(tmp_path, db_url, conn, processes):
    # Lease 1.5s (3 heartbeats), sweeps every second: a bot that reclaimed what it has in hand would run the
    # 4s handler a second time at its first sweep after the lease ran out.
    cfg, marks = start_first_bot(tmp_path, db_url, conn, processes, "handler: tests.handlers:slow\nlease: 1500ms\n")
    owner = conn.execute("SELECT instance_id FROM bot_processes WHERE bot_name = %s", (FIRST,)).fetchone()[
        "instance_id"]
    with connect(db_url) as blocker:
        # The heartbeat updates the process's row and renews its leases in one statement: with the row
        # locked, it gives up after lock_timeout, and no lease is renewed (an overloaded host, in effect).
        blocker.execute("SELECT 1 FROM bot_processes WHERE instance_id = %s FOR UPDATE", (owner,))
        ticket_id = create_ticket(conn, cfg, "testms", "pipe", {"sleep_s": 4})
        wait_until(lambda: starts(marks, ticket_id) == 1, 10, "the handler to start")
        wait_until(lambda: conn.execute("SELECT lease_expires_at < statement_timestamp() AS lapsed FROM tickets "
                                        "WHERE id = %s", (ticket_id,)).fetchone()["lapsed"], 10,
                   "the ticket's lease to lapse while its handler runs")
        wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 15, "the handler's outcome to be written")
        blocker.rollback()
    assert starts(marks, ticket_id) == 1
    kinds = [e["kind"] for e in get_events(conn, ticket_id)]
    assert "claimed" not in kinds and kinds.count("transitioned") == 1, kinds


def test_the_retry_of_a_run_given_up_is_written_while_the_first_run_still_hangs(tmp_path, db_url, conn, processes):
    cfg, marks = start_first_bot(tmp_path, db_url, conn, processes,
                                 "handler: tests.handlers:hang_first_run\nhandler_timeout: 1s\n")
    ticket_id = create_ticket(conn, cfg, "testms", "pipe", {"hang_s": 20})
    # Given up after 1s (an error event, a retry after 100ms), and the retry returns at once.
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 10,
               lambda: f"the retry's outcome to be written (events: {[e['kind'] for e in get_events(conn, ticket_id)]})")
    kinds = [e["kind"] for e in get_events(conn, ticket_id)]
    assert kinds[:3] == ["created", "error", "transitioned"], kinds
    assert "handler_timeout" in str(get_events(conn, ticket_id)[1]["detail"])
    # The first run still hangs; when it returns, its result is dropped: nothing runs or is written again.
    stays_true(lambda: starts(marks, ticket_id) == 2, 3, "the handler to have run exactly twice")
    assert [e["kind"] for e in get_events(conn, ticket_id)].count("transitioned") == 1


def test_a_slow_message_handler_neither_stops_the_heartbeat_nor_runs_past_handler_timeout(
        tmp_path, db_url, conn, processes):
    cfg, _ = start_first_bot(tmp_path, db_url, conn, processes,
                             "handler: tests.handlers:advance\nhandler_timeout: 1s\n")
    message_id = send_bot_notification(conn, cfg, None, FIRST, "4", kind="slow", sender="a test")

    def heartbeat_age_s():
        return conn.execute("SELECT extract(epoch FROM statement_timestamp() - heartbeat_at) AS s FROM bot_processes "
                            "WHERE bot_name = %s AND stopped_at IS NULL", (FIRST,)).fetchone()["s"]

    def rejected():
        return conn.execute("SELECT outcome, error FROM bot_messages WHERE id = %s", (message_id,)).fetchone()
    # Heartbeats every 500ms: fresh all along, while on_slow sleeps 4s.
    stays_true(lambda: heartbeat_age_s() < 1.5 and rejected()["outcome"] in (None, "rejected"), 4,
               lambda: f"the heartbeat to stay fresh (age {heartbeat_age_s():.2f}s)")
    row = wait_until(lambda: rejected()["outcome"] and rejected(), 5, "the message to be finished")
    assert row["outcome"] == "rejected" and "handler_timeout" in row["error"], row
    # The bot goes on with its work.
    ticket_id = create_ticket(conn, cfg, "testms", "pipe")
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 10, "a ticket to move meanwhile")


def test_a_bot_jammed_by_a_retried_hang_and_two_more_exits_to_be_restarted(tmp_path, db_url, conn, processes):
    """The issue's case: 4 threads, retries 1; one ticket's handler hangs and so does its retry, and two more
    hang: four runs given up hold the four threads. The bot exits non-zero (supervisord restarts it), though
    only three tickets hang."""
    cfg, _marks = start_first_bot(tmp_path, db_url, conn, processes,
                                  "handler: tests.handlers:slow\nhandler_timeout: 1s\nthreads: 4\nretries: 1\n")
    bot = processes.procs[-1]
    for _ in range(3):
        create_ticket(conn, cfg, "testms", "pipe", {"sleep_s": 120})
    wait_until(lambda: bot.poll() is not None, 30, "the bot to exit")
    assert bot.returncode == 70  # EX_SOFTWARE: not a config error, restarted by supervisord
    assert "handler threads are stuck" in bot.log_path.read_text()
