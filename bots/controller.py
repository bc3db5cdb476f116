"""The controller of a state worked by external workers (seed 002), run by the state's bot: holds whose
worker fell silent past stall_timeout go back to the queue, and tickets abandoned max_attempts times are
failed. It runs when the first hold stalls (real time: NEXT_STALL), when a hand-out wakes the bot, and at
every sweep."""

import logging

from bots.deadline import Deadline
from common.tickets.workers import claim_exhausted, next_stall_in_s, take_back_stalled

log = logging.getLogger("botfleet.bot")


class WorkerController:
    def __init__(self, spec, ticket_type):
        self.spec, self.ticket_type = spec, ticket_type
        self.deadline = Deadline()

    def run(self, conn, *, owner, free, in_hand) -> list:
        """Take back stalled holds; the exhausted tickets, claimed (at most `free`) for the caller to fail."""
        self.deadline.reset_in(None)
        stalled = take_back_stalled(conn, self.spec, self.spec.name)
        if stalled:
            log.info("took back %d ticket(s) whose worker was silent past stall_timeout (%gs)", stalled,
                     self.spec.work.stall_timeout_s)
        tickets = []
        if free > 0:  # else the next turn comes back for them
            tickets = claim_exhausted(conn, self.spec, self.ticket_type, owner, free, in_hand)
            if len(tickets) == free:
                self.deadline.now()  # more may be waiting
        stall_in_s = next_stall_in_s(conn, self.spec)
        if stall_in_s is not None:
            self.deadline.at_most_in(stall_in_s)
        return tickets
