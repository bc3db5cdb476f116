"""The duty of the built-in bot botfleet-status-1-expire: instances of status models whose timeout has
passed are finished (timed_out, at their deadline), whether or not anybody asks about them. Every read of
an instance does the same for that one instance; this makes the metrics and the database true for all.
It sleeps until the soonest deadline; a new instance wakes it, since it may end sooner."""

import logging

from common.status_models.instances import expire_overdue

log = logging.getLogger(__name__)



class StatusExpiryDuty:
    def __init__(self, config, actor, wake=None):
        self.config, self.actor = config, actor

    def run(self, conn) -> float | None:
        """Finish the instances past their timeout; seconds until the next deadline (None: none running). An
        instance created meanwhile wakes the bot (CREATE_STATUS_INSTANCE notifies it)."""
        expired, next_in_s = expire_overdue(conn)
        if expired:
            log.info("%d status model instance(s) timed out", expired)
        return next_in_s
