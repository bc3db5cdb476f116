"""The whole shipped fleet (config/, every bot, the API, the watchdog) under a real supervisord: idle, it only
turns its loops for its heartbeats; and business time shifted by an hour, then by a day, moves every due ticket
once while no process is restarted and `botfleet check` stays OK, since liveness runs on real time."""


import pytest

from common.people import directory
from common.store import clock
from common.store.connect import connect
from common.tickets.create import create_ticket
from common.tickets.read import get_events, get_ticket
from tests.harness import wait_until

pytestmark = [pytest.mark.processes, pytest.mark.process_faults]

TURNS_PER_HEARTBEAT = 2  # a heartbeat's turn, and now and then a sweep's or a message's: never a spin


def processes_now(conn) -> dict:
    """instance id -> (bot, pid, loop turns, heartbeat time) of the live registrations."""
    return {r["instance_id"]: r for r in conn.execute(
        "SELECT instance_id, bot_name, pid, loop_turns, heartbeat_at FROM bot_processes WHERE stopped_at IS NULL")}


def test_an_idle_fleet_turns_each_loop_about_once_per_heartbeat(shipped):
    interval_s = shipped.config.heartbeat_interval_s
    with connect(shipped.db_url, autocommit=True) as conn:
        before = processes_now(conn)
        assert len(before) == len(shipped.config.bots)

        def heartbeated_thrice():
            now = processes_now(conn)
            return all((now[i]["heartbeat_at"] - p["heartbeat_at"]).total_seconds() >= 3 * interval_s
                       for i, p in before.items()) and now
        after = wait_until(heartbeated_thrice, 10 * interval_s, "every process to heartbeat three more times")
    spinning = {}
    for instance, was in before.items():
        heartbeats = (after[instance]["heartbeat_at"] - was["heartbeat_at"]).total_seconds() / interval_s
        turns = after[instance]["loop_turns"] - was["loop_turns"]
        if turns > TURNS_PER_HEARTBEAT * heartbeats + 1:
            spinning[was["bot_name"]] = f"{turns} turns in {heartbeats:.1f} heartbeats"
    assert spinning == {}


def test_a_shift_of_an_hour_then_a_day_moves_every_due_ticket_once_and_restarts_nothing(shipped):
    with connect(shipped.db_url, autocommit=True) as conn:
        directory.add_user(conn, "rita")
        cfg = shipped.config
        requests = [create_ticket(conn, cfg, "helpdesk", "request", {"what": f"r{n}"}, creator="rita") for n in (1, 2)]
        incidents = [create_ticket(conn, cfg, "helpdesk", "incident", {"summary": f"i{n}"}, creator="rita")
                     for n in (1, 2)]
        wait_until(lambda: all(any(e["kind"] == "waited" for e in get_events(conn, t)) for t in requests + incidents),
                   30, "every ticket to wait for acceptance")
        events_before = conn.execute("SELECT coalesce(max(id), 0) AS id FROM watchdog_events").fetchone()["id"]
        processes_before = {i: r["pid"] for i, r in processes_now(conn).items()}

        def kinds(ticket_id):
            return [e["kind"] for e in get_events(conn, ticket_id)]

        def timeouts_to_rita():
            return [n["ticket_id"] for n in conn.execute(
                "SELECT ticket_id FROM notifications WHERE user_name = 'rita' AND kind = 'timeout' ORDER BY id")]

        # An hour: the requests (10 minutes) time out, once each; the incidents (2 hours) get one round.
        clock.shift(conn, 3600)
        wait_until(lambda: all(get_ticket(conn, t).state == 4 for t in requests), 30, "the requests to time out")
        wait_until(lambda: all(kinds(t).count("reminder") == 2 for t in incidents), 30, "the incidents' round")
        assert shipped.check()[0] == 0, shipped.check()
        # A day: the incidents time out, once each, with no round first (the one due before their deadline
        # was not sent by then: the timeout is the last word); with no on_timeout state they stay, and each
        # raises one error ticket.
        clock.shift(conn, 86400)
        wait_until(lambda: all("escalated" in kinds(t) for t in incidents), 30, "the incidents to time out")
        assert shipped.check()[0] == 0, shipped.check()
        assert sorted(timeouts_to_rita()) == sorted(requests + incidents)
        for ticket_id in requests:
            assert kinds(ticket_id).count("timeout") == 1, (ticket_id, kinds(ticket_id))
        for ticket_id in incidents:
            assert kinds(ticket_id).count("escalated") == 1, (ticket_id, kinds(ticket_id))
        for ticket_id in incidents:
            assert kinds(ticket_id).count("reminder") == 2, (ticket_id, kinds(ticket_id))
        # Nothing was restarted or retired: the same processes heartbeat on, by real time.
        assert conn.execute("SELECT bot, action, reason FROM watchdog_events WHERE id > %s AND action <> 'health'",
                            (events_before,)).fetchall() == []
        assert {i: r["pid"] for i, r in processes_now(conn).items()} == processes_before
