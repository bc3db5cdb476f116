"""A bot's last minutes for the console: tickets done and hop p50 per minute, from bot_stats_history.

bot_stats holds totals, which only grow; the watchdogs copy them into bot_stats_history once a minute
(`snapshot`). A point is the difference of two consecutive snapshots, as Prometheus's rate() and
histogram_quantile() would compute it from the same totals scraped once a minute.
"""

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.store import sql
from common.store.botstats import HOP_BUCKETS_S, INF, cumulative

HISTORY_MINUTES = 30  # what the console draws; the table keeps an hour


@dataclass(frozen=True)
class Point:
    at: datetime  # the minute of the later snapshot
    done: float  # steps written per minute between the two snapshots
    hop_p50_s: float | None  # the median hop between them; None: no hop


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    transitions: int
    hop_buckets: dict  # as bot_stats stores them: {upper bound: count in that bucket}, "+Inf" for the rest


def snapshot(conn):
    """Write this minute's snapshot of every bot's totals, unless another watchdog already did."""
    conn.execute(sql.SNAPSHOT_BOT_STATS)


def bot_history(conn, minutes: int = HISTORY_MINUTES) -> dict[str, list[Point]]:
    """Per bot with snapshots, its points of the last `minutes` minutes, oldest first (none before its second)."""
    by_bot: dict[str, list[Snapshot]] = {}
    for row in conn.execute(sql.BOT_STATS_HISTORY, {"minutes": minutes}):
        by_bot.setdefault(row["bot_name"], []).append(Snapshot(row["at"], row["transitions"], row["hop_buckets"]))
    return {bot: points(snapshots) for bot, snapshots in by_bot.items()}


# -- the arithmetic (pure) -----------------------------------------------------------------------------


def points(snapshots: list[Snapshot]) -> list[Point]:
    """One point per pair of consecutive snapshots (ordered by `at`). A minute without a snapshot (no watchdog
    ran then) makes one point of two minutes, counted per minute, not a spike."""
    result = []
    for before, after in itertools.pairwise(snapshots):
        minutes = (after.at - before.at).total_seconds() / 60
        hops = bucket_delta(before.hop_buckets, after.hop_buckets)
        result.append(Point(at=after.at, done=counter_delta(before.transitions, after.transitions) / minutes,
                            hop_p50_s=quantile(0.5, cumulative(hops, HOP_BUCKETS_S))))
    return result


def minute_slots(points: list[Point], until: datetime, minutes: int = HISTORY_MINUTES) -> list[Point | None]:
    """The points on a time axis for a sparkline: one slot per minute, the last one `until`'s minute, None in a
    minute without a point (no snapshot then, or the bot's first), so that a gap shows as one, not as a squeeze."""
    last = until.replace(second=0, microsecond=0)
    by_minute = {point.at: point for point in points}
    return [by_minute.get(last - timedelta(minutes=back)) for back in range(minutes - 1, -1, -1)]


def counter_delta(before: int, after: int) -> int:
    """What a counter counted between two readings. One that went down was reset (its row written anew): it
    counted what it holds now, as Prometheus's rate() assumes, never a negative amount."""
    return after - before if after >= before else after


def bucket_delta(before: dict, after: dict) -> dict:
    """What a stored histogram ({bound: count}) counted between two readings. If any bucket went down the
    histogram was reset, as a whole: it counted what it holds now."""
    delta = {key: int(count) - int(before.get(key, 0)) for key, count in after.items()}
    if any(count < 0 for count in delta.values()) or any(key not in after for key in before):
        return {key: int(count) for key, count in after.items()}
    return {key: count for key, count in delta.items() if count}


def quantile(q: float, pairs: list) -> float | None:
    """The q-quantile of a histogram given as (le, cumulative count) pairs, +Inf last (botstats.cumulative),
    the way Prometheus's histogram_quantile() estimates it: linear interpolation within the bucket the rank
    falls in, from 0 below the first bound; a rank in the +Inf bucket gives the highest finite bound.
    None when nothing was counted."""
    total = pairs[-1][1] if pairs else 0
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(pairs) if count >= rank and count > 0)
    if pairs[index][0] == INF:
        return float(pairs[index - 1][0]) if index > 0 else None
    upper_s = float(pairs[index][0])
    lower_s, below = (float(pairs[index - 1][0]), pairs[index - 1][1]) if index > 0 else (0.0, 0)
    if index == 0 and upper_s <= 0:
        return upper_s
    return lower_s + (upper_s - lower_s) * (rank - below) / (pairs[index][1] - below)
