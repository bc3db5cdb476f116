"""What a bot counts for the watchdog's metrics: counters and two latency histograms.

A bot accumulates deltas in memory (only its control loop touches them) and adds them to its
`bot_stats` row with each heartbeat, so the totals only grow, whichever process counted them.
Buckets are stored per bucket (not cumulative) under their upper bound ("+Inf" for the rest), so
totals written under other bounds (an older release) stay what they were.
"""

import bisect
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

HOP_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HANDLER_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COUNTERS = ("transitions", "handler_failures", "error_tickets", "timeouts", "reminders", "notifications_rejected")


INF = "+Inf"


def bound_key(bound_s: float) -> str:
    """How a bucket's upper bound is written, as a stored key and as Prometheus's `le`."""
    return repr(float(bound_s))


def cumulative(stored: dict, bounds_s=()) -> list:
    """(le, cumulative count) pairs as Prometheus wants them, +Inf last, from stored {bound: count}; the
    buckets `bounds_s` are there even when nothing was counted in them."""
    counts = {bound_key(b): 0 for b in bounds_s} | {INF: 0}
    for key, count in stored.items():
        counts[key] = counts.get(key, 0) + int(count)
    total, pairs = 0, []
    for key in sorted(counts, key=lambda k: float("inf") if k == INF else float(k)):
        total += counts[key]
        pairs.append((key, total))
    return pairs


@dataclass
class Histogram:
    bounds_s: tuple
    counts: list = field(default_factory=list)
    sum_s: float = 0.0

    def __post_init__(self):
        self.counts = self.counts or [0] * (len(self.bounds_s) + 1)

    def observe(self, value_s: float):
        self.counts[bisect.bisect_left(self.bounds_s, value_s)] += 1
        self.sum_s += value_s

    def stored(self) -> dict:
        """The counts as stored: {upper bound: count} for the buckets that counted anything."""
        keys = [*map(bound_key, self.bounds_s), INF]
        return {key: count for key, count in zip(keys, self.counts, strict=True) if count}


class BotStats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.hop = Histogram(HOP_BUCKETS_S)
        self.handler = Histogram(HANDLER_BUCKETS_S)

    def empty(self) -> bool:
        return not any(self.counters.values()) and not any(self.hop.counts) and not any(self.handler.counts)

    def params(self, bot_name) -> dict:
        return {"bot": bot_name, **self.counters, "hop_buckets": Jsonb(self.hop.stored()), "hop_sum_s": self.hop.sum_s,
                "handler_buckets": Jsonb(self.handler.stored()), "handler_sum_s": self.handler.sum_s}
