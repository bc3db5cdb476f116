"""Writing a bot's outcomes: a batch in one statement, and what to do when the database refuses part of it.

A step the database refuses must not take the batch, or the bot, down with it: the batch is then written
step by step, and a step that still fails becomes that step's failure (an error event, retries, then one
error ticket), as if its handler had raised. A step whose ticket row someone else holds locked is
deferred, and written after the next heartbeat.
"""

import logging

from common.store.reconnect import CONNECTION_ERRORS, TRY_LATER
from common.tickets.proceed import failed_step
from common.tickets.record import Written, add_ticket_to_proceeded_list

log = logging.getLogger("botfleet.bot")


class OutcomeWriter:
    def __init__(self, config, spec, ticket_type, owner):
        self.config, self.spec, self.ticket_type, self.owner = config, spec, ticket_type, owner

    def write(self, conn, steps) -> tuple[Written, list, list]:
        """(what was written, the steps as written, the steps deferred)."""
        try:
            return self._add(conn, steps), steps, []
        except TRY_LATER as exc:
            if len(steps) == 1:
                log.info("ticket %s is locked by someone else (%s); writing its outcome later", steps[0].ticket.id,
                         str(exc).strip())
                return Written([], []), [], steps
            log.info("a batch of %d outcome(s) waited too long (%s); writing them one by one", len(steps),
                     str(exc).strip())
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            log.warning("a batch of %d outcome(s) could not be written (%s); writing them one by one",
                        len(steps), exc)
        written, as_written, deferred = Written([], []), [], []
        for step in steps:
            try:
                one, step = self._write_one(conn, step)
            except TRY_LATER:
                deferred.append(step)
                continue
            written.applied += one.applied
            written.stale += one.stale
            as_written.append(step)
        return written, as_written, deferred

    def _add(self, conn, steps) -> Written:
        return add_ticket_to_proceeded_list(conn, self.config, steps, self.owner, self.spec.name)

    def _write_one(self, conn, step) -> tuple[Written, object]:
        try:
            return self._add(conn, [step]), step
        except (*TRY_LATER, *CONNECTION_ERRORS):
            raise
        except Exception as exc:
            log.warning("the outcome of ticket %s cannot be written (%s); recorded as a failed step", step.ticket.id, exc)
            failure = failed_step(step.ticket, self.ticket_type, self.spec,
                                  f"its outcome could not be written: {type(exc).__name__}: {exc}", step.hop_s,
                                  step.handler_s)
        try:
            return self._add(conn, [failure]), failure
        except CONNECTION_ERRORS:
            raise
        except Exception:
            # Not even the failure can be written: let the ticket go; its lease runs out and it is tried again.
            log.exception("could not record the failure of ticket %s; its lease will expire", step.ticket.id)
            return Written([], []), failure
