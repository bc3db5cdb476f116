"""A bot's heartbeat: every heartbeat_interval, on real time, it proves the process alive, renews the leases of
the tickets in hand, adds the counts since the last one to bot_stats, and retires the bot's peers that fell
silent (their tickets are then freed by exactly one live process)."""

import time

from bots.deadline import Deadline
from common.store import sql
from common.store.botstats import BotStats


class Heartbeat:
    def __init__(self, spec, owner, *, interval_s, dead_after_s):
        self.spec, self.owner = spec, owner
        self.interval_s, self.dead_after_s = interval_s, dead_after_s
        self.deadline = Deadline(interval_s)
        self.stats = BotStats()  # deltas since the last batch was taken
        self.stats_seq = 0
        self.unsent_stats = None  # the batch taken and not known to be written: sent again, as it was
        self.loop_turns = 0  # the control loop's turns, heartbeated: an idle bot's stay a few per heartbeat

    def run(self, conn, *, held, processed, failed, connected_at_mono) -> list:
        """One heartbeat; the instance ids of this bot's processes it found dead (retired now)."""
        self.deadline.reset_in(self.interval_s)
        row = conn.execute(sql.HEARTBEAT, {
            "owner": self.owner, "lease_s": self.spec.lease_s, "held": list(held), "processed": processed,
            "failed": failed, "bot": self.spec.name, "dead_after_s": self.dead_after_s,
            "loop_turns": self.loop_turns}).fetchone()
        self.flush_stats(conn)
        # A process that has itself just come back (after an outage) would take every peer for dead.
        if row and row["silent_peers"] and time.monotonic() - connected_at_mono >= self.dead_after_s:
            return [r["instance_id"] for r in conn.execute(sql.RETIRE_SILENT_PROCESSES, {
                "bot": self.spec.name, "owner": self.owner, "dead_after_s": self.dead_after_s}).fetchall()]
        return []

    def flush_stats(self, conn):
        """Add the counts to bot_stats once: a batch whose reply was lost is sent again under its sequence
        number (the database adds it only if it did not already), and counts since go in the next batch."""
        if self.unsent_stats is None:
            if self.stats.empty():
                return
            self.stats_seq += 1
            self.unsent_stats = {**self.stats.params(self.spec.name), "seq": self.stats_seq, "owner": self.owner}
            self.stats.reset()
        conn.execute(sql.ADD_BOT_STATS, self.unsent_stats)
        self.unsent_stats = None
