"""The connection budget from the watchdog's loop: this host's fleet against the server's connections.

Other hosts and clients come and go, so a fleet that fit at `botfleet up` may stop fitting. The watchdog
looks every CHECK_EVERY_S and logs when the verdict changes; it never restarts anything over it (a restart
would only take connections again). Prometheus gets the same figures at each scrape (watchdog/collector.py).
"""

import logging
import time

from common.store.connections import FleetNeed, measure

log = logging.getLogger("botfleet.watchdog")

CHECK_EVERY_S = 60.0  # pg_stat_activity is read this often at most; the figures move with deploys, not seconds


class ConnectionBudgetWatch:
    def __init__(self, need: FleetNeed, every_s: float = CHECK_EVERY_S, clock=time.monotonic):
        self.need, self.every_s, self.clock = need, every_s, clock
        self.level = None  # the last verdict logged
        self.next_at = 0.0

    def check(self, conn):
        """The verdict when it was time to look again (logged if it changed), else None."""
        now = self.clock()
        if now < self.next_at:
            return None
        self.next_at = now + self.every_s
        verdict = measure(conn, self.need)
        if verdict.level != self.level:
            if verdict.level == "ok":
                log.info("connections: %s", verdict.message)
            else:
                log.warning("connections: %s", verdict.message)
            self.level = verdict.level
        return verdict
