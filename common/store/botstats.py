"""What a bot counts for the watchdog's metrics: counters and two latency histograms.

A bot accumulates deltas in memory (only its control loop touches them) and adds them to its
`bot_stats` row with each heartbeat, so the totals only grow, whichever process counted them.
Buckets are stored per bucket (not cumulative), with one more slot for +Inf.
"""

import bisect
from dataclasses import dataclass, field

HOP_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HANDLER_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COUNTERS = ("transitions", "handler_failures", "error_tickets", "timeouts", "reminders")


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

    def cumulative(self, counts=None) -> list:
        """(le, cumulative count) pairs as Prometheus wants them, +Inf last."""
        total, pairs = 0, []
        counts = list(counts if counts is not None else self.counts)
        counts += [0] * (len(self.bounds_s) + 1 - len(counts))
        for bound, count in zip([*map(str, self.bounds_s), "+Inf"], counts, strict=True):
            total += count
            pairs.append((bound, total))
        return pairs


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
        return {"bot": bot_name, **self.counters, "hop_buckets": self.hop.counts, "hop_sum_s": self.hop.sum_s,
                "handler_buckets": self.handler.counts, "handler_sum_s": self.handler.sum_s}
