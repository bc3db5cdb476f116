"""The duty of the built-in bot botfleet-sweep-1-running: seed 000's JOBSWEEPER.

Every `jobsweeper.every` (1 hour) it runs one job of the built-in type botfleet/sweep, visible in
/operations like any job: it clears the jobs closed longer than their retention (24 hours succeeded,
2 weeks failed; their final states' bots do the same, this catches types whose bots do not run), then
what purged or deleted tickets left behind: their history, their webhooks already done with, their
notifications no longer waiting to be mailed, and stale idempotency keys. The job ends done with what
it cleared in its payload, or failed with why; a run that a crash interrupted is closed failed by the next.
"""

import logging
from types import SimpleNamespace

import psycopg

from common.config.builtin import SWEEP_TICKET_TYPE
from common.store import sql
from common.tickets.create import create_ticket
from common.tickets.manual import patch_ticket
from common.tickets.read import list_tickets
from common.tickets.timers import purge_closed

log = logging.getLogger(__name__)

DONE, FAILED = 2, 3
MAX_BATCHES = 20  # per kind of leftover and run: the rest waits for the next run, the loop stays responsive


class SweepDuty:
    def __init__(self, config, actor, wake=None):
        self.config, self.actor = config, actor
        self.kind = SWEEP_TICKET_TYPE

    def run(self, conn) -> float:
        """Run a sweep if one is due; seconds until the next is."""
        due_in_s = conn.execute(sql.SWEEP_DUE_IN, {"every_s": self.config.sweep_every_s, **self._key()}).fetchone()[
            "due_in_s"]
        if due_in_s > 0:
            return due_in_s
        for stale in list_tickets(conn, open_only=True, limit=100, **self._key()):
            patch_ticket(conn, self.config, stale.id, state=FAILED, actor=self.actor,
                         payload={"error": "interrupted: the sweeper stopped in the middle of this run"})
        job_id = create_ticket(conn, self.config, self.kind.metaservice, self.kind.name, {}, job_name="JOBSWEEPER",
                               creator=self.actor)
        try:
            cleared = self._sweep(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the connection: the bot reconnects, and the next run closes this one failed
        except Exception as exc:
            log.exception("sweep %s failed", job_id)
            patch_ticket(conn, self.config, job_id, state=FAILED, payload={"error": str(exc)}, actor=self.actor)
        else:
            log.info("sweep %s cleared %s", job_id, cleared)
            patch_ticket(conn, self.config, job_id, state=DONE, payload={"cleared": cleared}, actor=self.actor)
        return self.config.sweep_every_s

    def _key(self) -> dict:
        return {"metaservice": self.kind.metaservice, "ticket_type": self.kind.name}

    def _sweep(self, conn) -> dict:
        cleared = {"jobs": 0}
        for kind in self.config.job_types():
            for state in kind.states.values():
                if state.final:
                    spec = SimpleNamespace(metaservice=kind.metaservice, ticket_type=kind.name, state=state.code)
                    cleared["jobs"] += purge_closed(conn, spec, kind)[0]
        for name, statement in sql.TIDY_STATEMENTS.items():
            cleared[name] = 0
            for _ in range(MAX_BATCHES):
                removed = conn.execute(statement).rowcount
                cleared[name] += removed
                if removed == 0:
                    break
        return cleared
