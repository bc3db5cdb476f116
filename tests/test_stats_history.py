"""The console's history of bot stats: a snapshot per minute of business time (one, however many watchdogs
take it), an hour kept, and per bot the steps done and the hop p50 of each minute from consecutive snapshots."""

import os
from datetime import UTC, datetime, timedelta

import pytest

from common.config.names import hostname
from common.fleet.stats_history import (
    Point,
    Snapshot,
    bot_history,
    bucket_delta,
    counter_delta,
    minute_slots,
    points,
    quantile,
    snapshot,
)
from common.store import clock, sql
from common.store.botstats import HOP_BUCKETS_S, BotStats, cumulative
from tests.test_watchdog_lease import make_watchdog

FIRST = "testms-pipe-1-first"
SECOND = "testms-pipe-2-second"


# -- against PostgreSQL ------------------------------------------------------------------------------------


class Bot:
    """Adds counts to a bot's bot_stats row as its heartbeat does (ADD_BOT_STATS, one batch at a time)."""

    def __init__(self, conn, name):
        self.conn, self.name, self.seq = conn, name, 0
        conn.execute(sql.REGISTER_PROCESS, {"owner": f"{name}-p", "bot": name, "host": hostname(),
                                            "pid": os.getpid(), "version": "test", "process_name": name})

    def add(self, transitions, hops_s=()):
        stats = BotStats()
        stats.counters["transitions"] = transitions
        for hop_s in hops_s:
            stats.hop.observe(hop_s)
        self.seq += 1
        self.conn.execute(sql.ADD_BOT_STATS, {**stats.params(self.name), "seq": self.seq, "owner": f"{self.name}-p"})


def next_minute(conn):
    """The business clock moved to five seconds into the next minute: whatever runs in the next 55 s of real time
    runs in that one minute."""
    now = clock.now(conn)
    clock.shift(conn, 65 - now.second - now.microsecond / 1e6)


def history_rows(conn):
    return conn.execute("SELECT bot_name, at, transitions FROM bot_stats_history ORDER BY bot_name, at").fetchall()


def test_done_and_hop_p50_per_minute_from_consecutive_snapshots(conn, synced):
    first, second = Bot(conn, FIRST), Bot(conn, SECOND)
    next_minute(conn)
    first.add(10, [0.003] * 10)
    snapshot(conn)
    for first_counts, second_done in [((20, [0.03] * 4), 7), ((0, []), 0), ((5, [0.0007] * 5), 1)]:
        next_minute(conn)
        first.add(*first_counts)
        second.add(second_done)
        snapshot(conn)

    history = bot_history(conn)
    assert [(p.done, p.hop_p50_s) for p in history[FIRST]] == [
        # 4 hops in (0.02, 0.05]: the median is rank 2 of 4 there, half way.
        (20.0, pytest.approx(0.035)),
        (0.0, None),
        # 5 hops in (0.0005, 0.001]: rank 2.5 of 5.
        (5.0, pytest.approx(0.00075)),
    ]
    # SECOND's row was written at its first add: its first point is the minute after.
    assert [(p.done, p.hop_p50_s) for p in history[SECOND]] == [(0.0, None), (1.0, None)]
    minutes = [p.at for p in history[FIRST]]
    assert [b - a for a, b in zip(minutes, minutes[1:], strict=False)] == [timedelta(minutes=1)] * 2
    assert minutes[-1] == clock.now(conn).replace(second=0, microsecond=0)


def test_a_reset_counter_is_a_restart_not_a_negative_point(conn, synced):
    bot = Bot(conn, FIRST)
    next_minute(conn)
    bot.add(100, [0.003] * 10)
    snapshot(conn)
    next_minute(conn)
    conn.execute("DELETE FROM bot_stats WHERE bot_name = %s", (FIRST,))
    bot.add(4, [0.2] * 2)
    snapshot(conn)

    assert [(p.done, p.hop_p50_s) for p in bot_history(conn)[FIRST]] == [(4.0, pytest.approx(0.175))]


def test_an_hour_is_kept_and_the_console_reads_its_last_30_minutes(conn, synced):
    bot = Bot(conn, FIRST)
    for _ in range(65):
        next_minute(conn)
        bot.add(3)
        snapshot(conn)

    rows = history_rows(conn)
    assert len(rows) == 60
    assert rows[0]["at"] > clock.now(conn) - timedelta(minutes=60)
    assert [r["transitions"] for r in rows] == list(range(6 * 3, 66 * 3, 3))
    history = bot_history(conn)
    assert [p.done for p in history[FIRST]] == [3.0] * 30


def test_two_watchdogs_in_the_same_minute_write_one_row_per_bot(tmp_path, db_url, synced, conn):
    Bot(conn, FIRST).add(5)
    Bot(conn, SECOND).add(8)
    leader = make_watchdog(tmp_path, db_url, "host-a:1", lease_s=60)
    other = make_watchdog(tmp_path, db_url, "host-b:2", lease_s=60)
    try:
        next_minute(conn)
        leader.check_once()  # the first check of each does its housekeeping
        conn.execute("UPDATE bot_stats SET transitions = 50 WHERE bot_name = %s", (FIRST,))
        other.check_once()
        assert (leader.is_leader, other.is_leader) == (True, False)
        # The minute's first snapshot stands; the other watchdog's found it and wrote nothing.
        assert [(r["bot_name"], r["transitions"]) for r in history_rows(conn)] == [(FIRST, 5), (SECOND, 8)]

        # Next minute, the one that is not the leader comes first: it writes the minute all the same.
        next_minute(conn)
        other.next_housekeeping_mono = leader.next_housekeeping_mono = 0.0
        other.check_once()
        leader.check_once()
        assert [(r["bot_name"], r["transitions"]) for r in history_rows(conn)] == [
            (FIRST, 5), (FIRST, 50), (SECOND, 8), (SECOND, 8)]
    finally:
        leader._drop_connection()
        other._drop_connection()


def test_a_bot_no_longer_configured_is_not_snapshotted(conn, synced):
    Bot(conn, FIRST).add(5)
    conn.execute("INSERT INTO bot_stats (bot_name, transitions) VALUES ('gone-bot', 9)")
    snapshot(conn)
    assert [r["bot_name"] for r in history_rows(conn)] == [FIRST]


# -- the arithmetic (pure) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("before, after, counted", [
    (10, 15, 5),
    (10, 10, 0),
    (10, 3, 3),  # reset: it counted what it holds now
    (0, 0, 0),
])
def test_counter_delta(before, after, counted):
    assert counter_delta(before, after) == counted


@pytest.mark.parametrize("before, after, counted", [
    ({}, {}, {}),
    ({"0.01": 2}, {"0.01": 5, "+Inf": 1}, {"0.01": 3, "+Inf": 1}),
    ({"0.01": 2, "0.1": 4}, {"0.01": 2, "0.1": 4}, {}),  # nothing new
    ({"0.01": 5}, {"0.01": 2}, {"0.01": 2}),  # a bucket went down: reset
    ({"0.01": 5, "0.1": 1}, {"0.01": 7}, {"0.01": 7}),  # a bucket gone: reset
    ({"0.001": 3}, {"0.001": 3, "0.002": 1}, {"0.002": 1}),  # a bucket of other bounds (another release)
])
def test_bucket_delta(before, after, counted):
    assert bucket_delta(before, after) == counted


@pytest.mark.parametrize("stored, p50_s", [
    ({}, None),
    ({"0.0005": 4}, 0.00025),  # the first bucket interpolates from 0
    ({"0.01": 4}, 0.0075),  # from the bound below, counted in or not
    ({"0.02": 1, "0.05": 3}, 0.02 + 0.03 * (2 - 1) / 3),
    ({"0.02": 2, "0.05": 2}, 0.02),  # the rank is the first bucket's top
    ({"60.0": 1, "+Inf": 5}, 60.0),  # in +Inf: the highest finite bound, as Prometheus
    ({"+Inf": 1}, 60.0),
    ({"0.001": 1, "5.0": 1, "+Inf": 1}, 2.5 + 2.5 * 0.5),  # the empty buckets between count for nothing
])
def test_quantile_of_hop_buckets_as_histogram_quantile(stored, p50_s):
    assert quantile(0.5, cumulative(stored, HOP_BUCKETS_S)) == pytest.approx(p50_s)


def test_quantile_of_nothing_is_none():
    assert quantile(0.5, []) is None


def test_points_of_snapshots_a_minute_missed_is_counted_per_minute():
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    snapshots = [Snapshot(t0, 10, {"0.01": 1}),
                 Snapshot(t0 + timedelta(minutes=1), 16, {"0.01": 1, "0.1": 2}),
                 Snapshot(t0 + timedelta(minutes=3), 20, {"0.01": 1, "0.1": 2})]
    assert points(snapshots) == [Point(t0 + timedelta(minutes=1), 6.0, pytest.approx(0.075)),
                                 Point(t0 + timedelta(minutes=3), 2.0, None)]
    assert points(snapshots[:1]) == []


def test_minute_slots_put_points_on_their_minutes_and_none_where_there_is_none():
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    one, three = Point(t0 + timedelta(minutes=1), 6.0, None), Point(t0 + timedelta(minutes=3), 2.0, 0.01)
    assert minute_slots([one, three], until=t0 + timedelta(minutes=4, seconds=30), minutes=5) == [
        None, one, None, three, None]
    assert minute_slots([one, three], until=t0 + timedelta(minutes=3), minutes=2) == [None, three]
    assert minute_slots([], until=t0, minutes=3) == [None, None, None]
