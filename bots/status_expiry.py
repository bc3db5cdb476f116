"""The duty of the built-in bot botfleet-status-1-expire: instances of status models whose timeout has
passed are finished (timed_out, at their deadline), whether or not anybody asks about them. Every read of
an instance does the same for that one instance; this makes the metrics and the database true for all."""

import logging

from common.status_models.instances import expire_overdue

log = logging.getLogger(__name__)

# The longest the duty sleeps: an instance created meanwhile may have a timeout sooner than the next
# deadline it knew of. A look is one index scan, so waking every second costs nothing worth saving.
POLL_S = 1.0


class StatusExpiryDuty:
    def __init__(self, config, actor, wake=None):
        self.config, self.actor = config, actor

    def run(self, conn) -> float:
        """Finish the instances past their timeout; seconds until it should look again."""
        expired, next_in_s = expire_overdue(conn)
        if expired:
            log.info("%d status model instance(s) timed out", expired)
        return POLL_S if next_in_s is None else max(0.0, min(POLL_S, next_in_s))
