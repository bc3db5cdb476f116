"""A bot's stats in bot_stats: histogram counts kept under their bounds, and each batch counted once."""

import os

import psycopg
import pytest

from bots.heartbeat import Heartbeat
from common.config.names import hostname
from common.store import sql
from common.store.botstats import HOP_BUCKETS_S, BotStats, Histogram, cumulative
from common.store.connect import connect
from common.store.migrate import upgrade
from common.store.processes import process_owner

BOT = "testms-pipe-1-first"


def register(conn, owner):
    conn.execute(sql.REGISTER_PROCESS, {"owner": owner, "bot": BOT, "host": hostname(), "pid": os.getpid(),
                                        "version": "test", "process_name": BOT})


def totals(conn):
    return conn.execute("SELECT transitions, hop_buckets, hop_sum_s FROM bot_stats WHERE bot_name = %s",
                        (BOT,)).fetchone()


def add(conn, owner, seq, stats):
    conn.execute(sql.ADD_BOT_STATS, {**stats.params(BOT), "seq": seq, "owner": owner})


def test_counts_written_under_other_bounds_keep_their_buckets(conn, synced):
    register(conn, "p1")
    old = BotStats()
    old.hop = Histogram((0.001, 0.1))  # an older release's buckets
    for value_s in (0.0005, 0.05, 0.05, 5.0):
        old.hop.observe(value_s)
    add(conn, "p1", 1, old)
    new = BotStats()  # today's buckets
    new.hop.observe(0.0015)
    add(conn, "p1", 2, new)

    pairs = dict(cumulative(totals(conn)["hop_buckets"], HOP_BUCKETS_S))
    # Each count stays at the bound it was counted under; nothing moved to a neighbour's position.
    assert pairs["0.001"] == 1  # the old 0.0005 observation
    assert pairs["0.002"] == 2  # plus today's 0.0015
    assert pairs["0.1"] == 4  # plus the old two of 0.05
    assert pairs["+Inf"] == 5
    assert list(pairs.values()) == sorted(pairs.values())  # cumulative, as Prometheus requires


class LosesTheFirstReply:
    """A connection whose first statement is carried out and then reported lost, as when the network drops
    between the server's commit and its answer."""

    def __init__(self, conn):
        self.conn, self.lost = conn, False

    def execute(self, query, params=None):
        result = self.conn.execute(query, params)
        if not self.lost:
            self.lost = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result


def test_a_batch_sent_again_after_its_reply_was_lost_is_counted_once(db_url, conn, synced):
    heartbeat = Heartbeat(synced.bot(BOT), process_owner(BOT), interval_s=1, dead_after_s=3)
    register(conn, heartbeat.owner)
    with connect(db_url, autocommit=True) as bot_conn:
        loses = LosesTheFirstReply(bot_conn)
        heartbeat.stats.counters["transitions"] += 3
        heartbeat.stats.hop.observe(0.01)
        with pytest.raises(psycopg.OperationalError):
            heartbeat.flush_stats(loses)
        assert totals(conn)["transitions"] == 3  # written, though the bot could not know
        heartbeat.stats.counters["transitions"] += 2  # counted meanwhile
        heartbeat.flush_stats(loses)  # the lost batch again: already counted
        heartbeat.flush_stats(loses)  # the new counts
    row = totals(conn)
    assert row["transitions"] == 5
    assert sum(row["hop_buckets"].values()) == 1 and row["hop_sum_s"] == pytest.approx(0.01)


def test_migration_0008_keeps_counts_stored_by_position_under_their_bounds(empty_db_url):
    upgrade(empty_db_url, revision="0007")
    with connect(empty_db_url, autocommit=True) as conn:
        positions = [0] * (len(HOP_BUCKETS_S) + 1)
        positions[0], positions[3], positions[-1] = 2, 5, 1  # <= 0.0005, <= 0.005, +Inf
        conn.execute("INSERT INTO bot_stats (bot_name, hop_buckets, handler_buckets) VALUES (%s, %s, '{}')",
                     (BOT, positions))
    upgrade(empty_db_url)
    with connect(empty_db_url, autocommit=True) as conn:
        row = conn.execute("SELECT hop_buckets, handler_buckets FROM bot_stats").fetchone()
    assert row["hop_buckets"] == {"0.0005": 2, "0.005": 5, "+Inf": 1}
    assert row["handler_buckets"] == {}
