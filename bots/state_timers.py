"""The timers of a state's tickets, run by the state's bot when the soonest is due (and by every sweep, as a
safety net): acceptance rounds and reminders, lifetimes' timeouts, stays reported stuck, closed tickets past
their retention; then the next due time of any of them, or of a wait's end.

The timer is set from what the database says is next (NEXT_DUE, by the one clock), and again whenever a
written outcome leaves a ticket here with a sooner wait or timer, a sleeping ticket is created, or business
time moves for everyone (a clock shift, a type's new lifetime: a TIMERS notification). So a deadline or a
round fires within the loop's reach of its time, whatever sweep_interval is.
"""

import logging

from bots.deadline import Deadline
from common.tickets.claim import claim_timed_out, next_due_in_s
from common.tickets.timers import purge_closed, report_stuck, send_due_rounds

log = logging.getLogger("botfleet.bot")


class StateTimers:
    def __init__(self, config, spec, ticket_type):
        self.config, self.spec, self.ticket_type = config, spec, ticket_type
        self.deadline = Deadline()

    def run(self, conn, *, owner, free, in_hand, counters) -> list:
        """Send what is due, report what is stuck, purge what is past retention, set the next timer; the
        tickets whose lifetime ran out, claimed (at most `free`) for the caller to time out."""
        self.deadline.reset_in(None)
        timed_out = []
        if not self.spec.final:
            counters["reminders"] += send_due_rounds(conn, self.spec, self.ticket_type, self.spec.name,
                                                     mail=self.config.mail is not None)
            if free > 0:  # else the next turn comes back for them: a thread is free again by then
                timed_out = claim_timed_out(conn, self.spec, owner, free, in_hand)
                if len(timed_out) == free:
                    self.deadline.now()
            counters["error_tickets"] += report_stuck(conn, self.config, self.spec, self.ticket_type, self.spec.name)
        # The seed's last step accumulates closed tickets and clears them after the retention; a ticket
        # closed by hand where it stood is cleared by the bot of that state.
        purged, more = purge_closed(conn, self.spec, self.ticket_type)
        if purged:
            log.info("removed %d ticket(s) closed longer than the retention (%s)", purged, self.ticket_type.on_retention)
        if more:
            self.deadline.now()
        self.learn(next_due_in_s(conn, self.spec))
        return timed_out

    def learn(self, due_in_s):
        """A wait or a timer of this state ends in due_in_s (None: nothing to time)."""
        if due_in_s is not None:
            self.deadline.at_most_in(due_in_s)
