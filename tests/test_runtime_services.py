"""The bot loop's small services on their own, without a database: the handler pool's runs, the inbox that wakes
the loop, and the deadlines the loop sleeps until."""

import select
import threading
import time

from bots.deadline import Deadline
from bots.handler_pool import Finished, HandlerPool
from bots.inbox import Inbox
from tests.harness import wait_until


def finished(inbox, timeout_s=5.0) -> Finished:
    readable, _, _ = select.select([inbox], [], [], timeout_s)
    assert readable, "nothing came back in time"
    [item] = inbox.take_all()
    return item


def test_a_run_given_up_is_counted_by_run_and_its_late_result_dropped():
    inbox = Inbox()
    pool = HandlerPool(threads=2, timeout_s=0.2, inbox=inbox, name="test")
    release = threading.Event()
    hung = pool.submit(lambda: release.wait(5) and "late", ticket_id=7,
                       overrun=lambda reason, handler_s: ("overran", reason), what="the handler of ticket 7")
    wait_until(lambda: hung.started_mono is not None, 5, "the first run to start")
    wait_until(lambda: pool.next_timeout_mono() is None or time.monotonic() >= pool.next_timeout_mono(), 5,
               "handler_timeout to pass")
    [(given_up, result)] = pool.time_out(time.monotonic())
    assert given_up is hung and result[0] == "overran" and "handler_timeout (0.2s)" in result[1]
    assert pool.stuck() == 1 and not pool.all_stuck()
    # The retry of the same ticket is a run of its own, and its result counts.
    retry = pool.submit(lambda: "retried", ticket_id=7, what="the handler of ticket 7")
    back = finished(inbox)
    assert (back.run_number, back.result) == (retry.number, "retried") and pool.accept(back) is retry
    # The first run comes back late: dropped, and its thread is free again.
    release.set()
    late = finished(inbox)
    assert late.run_number == hung.number and pool.accept(late) is None
    assert pool.stuck() == 0
    pool.shutdown()


def test_every_thread_stuck_in_runs_given_up_is_all_stuck_even_for_one_ticket():
    inbox = Inbox()
    pool = HandlerPool(threads=2, timeout_s=0.1, inbox=inbox, name="test")
    release = threading.Event()
    for _ in range(2):  # one ticket, a run and its retry, both hanging: two threads, not one
        pool.submit(lambda: release.wait(5), ticket_id=1, overrun=lambda reason, handler_s: reason)
    def give_up_overruns():
        pool.time_out(time.monotonic())
        return pool.stuck() == 2
    wait_until(give_up_overruns, 5, "both runs to be given up")
    assert pool.all_stuck()
    release.set()
    pool.shutdown()


def test_the_inbox_wakes_a_select_on_its_pipe_and_hands_everything_over_once():
    inbox = Inbox()
    assert select.select([inbox], [], [], 0)[0] == []
    threading.Timer(0.05, inbox.put, args=("one",)).start()
    assert select.select([inbox], [], [], 5)[0] == [inbox]
    inbox.put("two")
    assert inbox.take_all() == ["one", "two"]
    assert select.select([inbox], [], [], 0)[0] == [] and inbox.empty()


def test_a_deadline_keeps_the_sooner_time_and_is_taken_once():
    deadline = Deadline()
    assert not deadline.due(time.monotonic())
    deadline.at_most_in(60)
    deadline.at_most_in(3600)  # later: the sooner stays
    assert 59 < deadline.at_mono - time.monotonic() <= 60
    deadline.at_most_in(-5)  # in the past is now, not earlier
    assert deadline.take(time.monotonic()) and not deadline.take(time.monotonic())
    deadline.reset_in(3600)
    deadline.reset_in(None)
    assert deadline.at_mono is None
