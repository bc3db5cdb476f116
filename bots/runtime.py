"""The bot process: one (metaservice, ticket type, state), one connection, one control loop, a pool of handler threads.

The control loop owns the connection and everything that touches it. It sleeps on the connection's socket
(LISTEN) and its inbox until the soonest deadline of its services, then gives each that is due its turn:

- the handler pool (bots/handler_pool.py): runs of handlers, each timed against handler_timeout;
- the writer (bots/writer.py): outcomes that came back, a batch per statement;
- the heartbeat (bots/heartbeat.py): liveness, leases of the tickets in hand, stats, dead peers;
- the sweep, every sweep_interval and after a reconnect: the safety net for lost notifications;
- the state's timers (bots/state_timers.py): rounds, lifetimes, stuck stays, retention, the next due time;
- claims, when a notification says work arrived;
- messages from other bots (bots/messages.py), handled on the handler pool;
- a built-in bot's duty (mail, webhooks, the JOBSWEEPER, status expiry), or the workers' controller
  (bots/controller.py) of a state worked outside the fleet.

An idle bot sleeps until its next heartbeat or timer: nothing is polled.
"""

import logging
import os
import signal
import sys
import threading
import time
from functools import partial

from bots.connection import BotConnection
from bots.controller import WorkerController
from bots.deadline import Deadline
from bots.handler_pool import Finished, HandlerPool
from bots.heartbeat import Heartbeat
from bots.inbox import Inbox
from bots.mail import MailDuty
from bots.messages import Messages
from bots.state_timers import StateTimers
from bots.status_expiry import StatusExpiryDuty
from bots.sweeper import SweepDuty
from bots.ticket_ids import IdRequest, TicketIds
from bots.webhooks import WebhookDuty
from bots.writer import OutcomeWriter
from common.config.handlers import import_handler
from common.people.directory import unknown_users
from common.store import sql
from common.store.processes import process_owner, register_process
from common.store.reconnect import CONNECTION_ERRORS, TRY_LATER
from common.store.revision import check_schema
from common.store.sync import sync_config
from common.tickets.claim import (
    claim_tickets_in_unknown_states,
    free_tickets_of,
    get_current_ticket_list,
    take_exclusive,
    wake_stranded_waits,
)
from common.tickets.proceed import failed_step, proceed_ticket, timeout_fallback, timeout_step, unknown_state_step
from common.tickets.workers import exhausted_step

log = logging.getLogger("botfleet.bot")

EXCLUSIVE_DRAIN_POLL_S = 0.25  # how often a bot holding the fleet for its exclusive ticket looks for the work in hand to end
EX_SOFTWARE = getattr(os, "EX_SOFTWARE", 70)
STOP = "stop"
DUTY_RESULTS = "duty"
DUTIES = {"mail": MailDuty, "webhook": WebhookDuty, "sweep": SweepDuty, "status": StatusExpiryDuty}


class BotRuntime:
    def __init__(self, config, spec, url, *, handler=None):
        self.config = config
        self.spec = spec
        self.ticket_type = config.ticket_type(spec.metaservice, spec.ticket_type)
        self.handler = (handler if handler is not None or spec.final or spec.duty or spec.external
                        else import_handler(spec))
        # Messages from other bots go to on_<kind> functions of the module the handler lives in.
        self.handler_module = sys.modules.get(self.handler.__module__) if self.handler is not None else None
        # The type's own timeout handler, if the module has one (else the built-in ticket_timeout).
        self.timeout_hook = getattr(self.handler_module, "ticket_timeout", None)
        self.owner = process_owner(spec.name)
        self.channel = sql.channel(spec.metaservice, spec.ticket_type, spec.state)
        self.capacity = max(spec.batch_size, spec.threads)
        self.inbox = Inbox()
        self.stopping = threading.Event()
        self.failure = None  # why the bot stops on its own, if it does: it then exits EX_SOFTWARE
        heartbeat_ms = config.heartbeat_interval_s * 1000
        # Half a heartbeat for a lock, the watchdog's hung threshold for any statement: past that,
        # giving up and trying again later is better than being killed for silence.
        self.db = BotConnection(url, spec.name, (self.channel, sql.LOCK_CHANNEL), {
            "lock_timeout_ms": max(1, int(heartbeat_ms / 2)),
            "statement_timeout_ms": max(1, int(config.hung_after_s * 1000))})
        self.pool = HandlerPool(spec.threads, spec.handler_timeout_s, self.inbox, spec.name)
        # Ids of the children handlers create, from the loop's connection as they plan them.
        self.ticket_ids = TicketIds(self.inbox, wait_s=config.hung_after_s)
        self.writer = OutcomeWriter(config, spec, self.ticket_type, self.owner)
        # A peer silent for as long as the watchdog takes to call a bot hung is dead: its tickets are freed.
        self.heartbeat = Heartbeat(spec, self.owner, interval_s=config.heartbeat_interval_s,
                                   dead_after_s=config.hung_after_s)
        self.sweep = Deadline(spec.sweep_interval_s)
        self.timers = StateTimers(config, spec, self.ticket_type)
        self.messages = Messages(spec, self.owner, self.handler_module)
        # wake: a duty that works on threads of its own (network I/O) calls it when it has results for the loop.
        self.duty = DUTIES[spec.duty](config, spec.name, wake=self._wake_duty) if spec.duty in DUTIES else None
        self.duty_deadline = Deadline()
        self.controller = WorkerController(spec, self.ticket_type) if spec.external else None
        self.claims = Deadline(0)  # tickets may be due: claim at the next turn
        self.held: set = set()  # ids of the tickets claimed and not yet written: never claimed again meanwhile
        self.finished: list = []  # steps to write
        self.deferred: list = []  # steps whose ticket row someone else had locked: written after the next heartbeat
        self.runs: dict = {}  # run number -> what its result is for: (kind, ticket or message row)
        self.processed = 0
        self.failed = 0

    @property
    def conn(self):
        return self.db.conn

    @property
    def stats(self):
        return self.heartbeat.stats

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        """Register, sweep once, then serve notifications, timers and sweeps until stop(). Returns the exit code."""
        conn = self.db.open()  # LISTEN is in place before the first sweep: nothing that commits from now is missed
        check_schema(conn)
        sync_config(conn, self.config, bot_names={self.spec.name})
        with conn.transaction():
            self._free_leases_of(register_process(conn, self.spec.name, self.owner))
        log.info("bot %s registered as %s", self.spec.name, self.owner)
        self.sweep.now()  # the first turn sweeps: tickets that arrived while the bot was down go first
        try:
            self._loop()
        finally:
            self._shutdown()
        return EX_SOFTWARE if self.failure else 0

    def stop(self):
        self.stopping.set()
        self.inbox.put(STOP)

    def fail(self, reason):
        """Stop as on SIGTERM (finish what is in hand), then exit non-zero so that supervisord restarts the bot."""
        log.error("%s: stopping, to be restarted", reason)
        self.failure = reason
        self.stop()

    def install_signal_handlers(self):
        def on_term(signum, frame):
            if self.stopping.is_set():
                log.warning("second signal %s: exiting at once", signum)
                os._exit(1)
            log.info("signal %s: finishing tickets in hand, then exiting", signum)
            self.stop()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    # -- the control loop ------------------------------------------------------------------------
    def _loop(self):
        while not self.stopping.is_set():
            self.heartbeat.loop_turns += 1
            try:
                notes = self.db.wait(self.inbox, self._next_deadline_mono() - time.monotonic())
                self._hear(notes)
                self._receive(self.inbox.take_all())
                self._turn(time.monotonic())
            except TRY_LATER as exc:
                log.warning("gave up waiting on the database (%s); trying again later", str(exc).strip())
            except CONNECTION_ERRORS as exc:
                log.warning("database connection lost (%s); reconnecting", exc)
                if self.db.reopen(self.stopping):
                    self.sweep.now()  # notifications were lost meanwhile
                    self.messages.pending = True

    def _next_deadline_mono(self) -> float:
        if self.finished or self.messages.wanted():
            return 0.0
        due = [d.at_mono for d in (self.heartbeat.deadline, self.sweep, self.timers.deadline, self.claims,
                                   self.duty_deadline, self.controller.deadline if self.controller else None)
               if d is not None and d.at_mono is not None]
        timeout = self.pool.next_timeout_mono()
        if timeout is not None:
            due.append(timeout)
        return min(due, default=time.monotonic() + self.config.heartbeat_interval_s)

    def _hear(self, notes):
        """What the notifications say: work arrived (claim), a message came, or business time moved."""
        for note in notes:
            if note.payload == "message":  # another bot sent this one a message
                self.messages.pending = True
            elif note.payload == sql.TIMERS and self.duty is None:  # the clock shifted, a type's times
                self.timers.deadline.now()                            # changed, a ticket sleeps
                if self.controller:
                    self.controller.deadline.now()
            if note.channel == self.channel and self.controller:
                self.controller.deadline.now()  # a hand-out (to time its stall) or a ticket arrived
            if self.duty is not None:
                self.duty_deadline.now()
            self.claims.now()

    def _receive(self, items):
        for item in items:
            if isinstance(item, Finished):
                self._finished(item)
            elif isinstance(item, IdRequest):
                item.answer(self.conn)
            elif item == DUTY_RESULTS:
                self.duty_deadline.now()

    def _turn(self, now_mono):
        for run, step in self.pool.time_out(now_mono):
            self._overran(run, step)
        if self.pool.all_stuck() and not self.stopping.is_set():
            self.fail(f"all {self.spec.threads} handler threads are stuck in handlers past handler_timeout")
        self._write_finished()
        if self.heartbeat.deadline.due(now_mono):
            self._heartbeat()
            self.finished, self.deferred = self.deferred + self.finished, []
        if self.sweep.take(now_mono):
            self._sweep()
            return
        if self.controller and self.controller.deadline.due(now_mono):
            self._control_workers()
        if self.duty is not None and self.duty_deadline.take(now_mono):
            self._run_duty()
        # Claims first: a ticket whose wait ended as its lifetime did (a clock shift passes both) goes on
        # with its handler, and times out in the state it reaches, if at all.
        if self.claims.take(now_mono) and not self.stopping.is_set():
            self._claim()
        if self.timers.deadline.due(now_mono):
            self._timers()
        if self.messages.wanted() and not self.stopping.is_set():
            self._take_messages()

    def _sweep(self):
        """check_ticket_list: everything this bot does, looked at once, in case a notification was lost."""
        self.sweep.reset_in(self.spec.sweep_interval_s)
        wake_stranded_waits(self.conn, self.spec, self.spec.name)
        if self.spec.state == self.ticket_type.initial and self.duty is None:
            self._claim_unknown_states()
        if self.controller:
            self._control_workers()
        if self.duty is not None:
            self._run_duty()
        else:
            self._claim()
            self._timers()
        self._take_messages()

    # -- work of the state -----------------------------------------------------------------------
    def _free(self) -> int:
        """Tickets this process can take on now: a thread stuck in an overrunning handler serves nobody."""
        return self.capacity - len(self.held) - self.pool.stuck()

    def _claim(self):
        # No handler runs for a final state, a duty bot or the controller of external workers.
        if self.spec.final or self.duty is not None or self.controller is not None:
            return
        free = self._free()
        if free <= 0:
            return  # claimed again once handlers hand tickets back (_write_finished)
        holds_fleet = self.ticket_type.exclusive and take_exclusive(self.conn, self.spec, self.ticket_type,
                                                                     self.spec.name)
        tickets = get_current_ticket_list(self.conn, self.spec, self.owner, free, self.ticket_type, self.held)
        for ticket in tickets:
            self._start(ticket, partial(proceed_ticket, ticket, self.config, self.handler, self.spec,
                                        new_id=self.ticket_ids.next),
                        overrun=partial(self._handler_overrun, ticket))
        if len(tickets) == free:
            self.claims.now()  # a full batch means more may be waiting
        if holds_fleet and not tickets:
            # The fleet is closed for this state's ticket: it starts once the work in hand has finished,
            # which no notification announces.
            self.claims.at_most_in(EXCLUSIVE_DRAIN_POLL_S)

    def _claim_unknown_states(self):
        for ticket in claim_tickets_in_unknown_states(self.conn, self.spec, self.ticket_type, self.owner,
                                                      self.spec.batch_size, self.held):
            log.warning("ticket %s is in state %s, which %s/%s does not have: raising an error ticket",
                        ticket.id, ticket.state, self.spec.metaservice, self.spec.ticket_type)
            self.held.add(ticket.id)
            self.finished.append(unknown_state_step(ticket, self.ticket_type))

    def _start(self, ticket, work, overrun):
        self.held.add(ticket.id)
        run = self.pool.submit(work, ticket_id=ticket.id, overrun=overrun, what=f"the handler of ticket {ticket.id}")
        self.runs[run.number] = ("ticket", ticket)

    def _handler_overrun(self, ticket, reason, handler_s):
        return failed_step(ticket, self.ticket_type, self.spec, reason, handler_s=handler_s)

    def _timers(self):
        timed_out = self.timers.run(self.conn, owner=self.owner, free=self._free(), in_hand=self.held,
                                    counters=self.stats.counters)
        if not timed_out:
            return
        nobody = set(unknown_users(self.conn, [t.creator for t in timed_out if t.creator]))
        for ticket in timed_out:
            log.info("ticket %s outlived its lifetime in state %s", ticket.id, ticket.state)
            creator_is_user = bool(ticket.creator) and ticket.creator not in nobody
            if self.timeout_hook is None:
                self.held.add(ticket.id)
                self.finished.append(timeout_step(ticket, self.config, self.spec, creator_is_user))
            else:  # code of the type's: run like a handler, on a handler thread, under handler_timeout
                self._start(ticket, partial(timeout_step, ticket, self.config, self.spec, creator_is_user,
                                            self.timeout_hook, new_id=self.ticket_ids.next),
                            overrun=lambda reason, _s, t=ticket, user=creator_is_user: timeout_fallback(
                                t, self.config, self.spec, user, reason))

    def _control_workers(self):
        for ticket in self.controller.run(self.conn, owner=self.owner, free=self._free(), in_hand=self.held):
            log.warning("ticket %s was abandoned by workers %d times: failing it", ticket.id, ticket.attempts)
            self.held.add(ticket.id)
            self.finished.append(exhausted_step(ticket, self.ticket_type, self.spec))

    def _run_duty(self):
        due_in_s = self.duty.run(self.conn)
        if due_in_s is not None:
            self.duty_deadline.at_most_in(due_in_s)

    def _wake_duty(self):
        """From a duty's own thread: its results are in; the loop runs it again at its next turn."""
        self.inbox.put(DUTY_RESULTS)

    def _take_messages(self):
        for row in self.messages.take(self.conn):
            run = self.pool.submit(partial(self.messages.handle, row), overrun=self._message_overrun,
                                   what=f"on_{row['kind']} for message {row['id']}")
            self.runs[run.number] = ("message", row)

    @staticmethod
    def _message_overrun(reason, _handler_s):
        return "rejected", reason

    # -- results ---------------------------------------------------------------------------------
    def _finished(self, finished):
        run = self.pool.accept(finished)
        kind, subject = self.runs.pop(finished.run_number, (None, None))
        if run is None or kind is None:
            return  # a late result of a run given up: its overrun was written in its place
        if kind == "message":
            outcome, error = finished.result if finished.failed is None else (
                "rejected", f"{type(finished.failed).__name__}: {finished.failed}")
            self.messages.finish(self.conn, subject, outcome, error, self.stats.counters)
        elif finished.failed is None:
            self.finished.append(finished.result)
        else:
            # Not a handler failure (those become steps) but a bug of ours: let the ticket go, so its lease
            # runs out instead of being renewed forever, and another attempt can be made.
            log.error("could not proceed ticket %s (%r); its lease will expire", subject.id, finished.failed)
            self.held.discard(subject.id)

    def _overran(self, run, result):
        kind, subject = self.runs.pop(run.number, (None, None))
        if kind == "message":
            self.messages.finish(self.conn, subject, *result, self.stats.counters)
        elif kind == "ticket":
            self.finished.append(result)

    def _write_finished(self):
        if not self.finished:
            return
        steps, self.finished = self.finished, []
        try:
            written, steps, deferred = self.writer.write(self.conn, steps)
        except CONNECTION_ERRORS:
            self.finished = steps + self.finished  # written after reconnecting; the step check keeps it once
            raise
        self.deferred += deferred
        self.held.difference_update(s.ticket.id for s in steps)
        self._count(steps, written.applied)
        for row in written.applied:  # the database says, by its clock, when each ticket left here is due
            if row["to_state"] == self.spec.state and not row["closes"]:
                for due_in_s in (row["due_in_s"], row["timer_in_s"]):
                    self.timers.learn(due_in_s)
        if written.stale:
            log.info("skipped %d outcome(s) already written by another process: tickets %s",
                     len(written.stale), [s.ticket.id for s in written.stale])
        if steps:
            self.claims.now()  # threads are free again

    def _count(self, steps, applied):
        """Tally written steps: this process's totals (bot_processes) and the deltas for bot_stats."""
        failures = sum(1 for s in steps if s.handler_error)
        self.processed += len(applied)
        self.failed += failures
        counters = self.stats.counters
        counters["handler_failures"] += failures
        counters["transitions"] += sum(1 for r in applied if r["kind"] == "transitioned")
        counters["error_tickets"] += sum(1 for r in applied if r["kind"] == "escalated")
        applied_ids = {r["id"] for r in applied}
        counters["timeouts"] += sum(1 for s in steps if s.plan.times_out and s.ticket.id in applied_ids)
        for step in steps:
            if step.hop_s is not None:
                self.stats.hop.observe(step.hop_s)
            self.stats.handler.observe(step.handler_s)

    # -- liveness --------------------------------------------------------------------------------
    def _heartbeat(self):
        retired = self.heartbeat.run(self.conn, held=self.held, processed=self.processed, failed=self.failed,
                                     connected_at_mono=self.db.connected_at_mono)
        self._free_leases_of(retired)

    def _free_leases_of(self, owners):
        """Make the tickets of dead processes of this bot claimable now, and claim them."""
        if not owners:
            return
        freed = free_tickets_of(self.conn, self.spec, owners)
        log.info("process(es) %s are dead: %d ticket(s) of theirs are claimable now", ", ".join(owners), freed)
        self.claims.now()

    # -- stopping --------------------------------------------------------------------------------
    def _shutdown(self):
        """Finish what is in hand within stop_timeout, release the rest, deregister."""
        deadline = time.monotonic() + self.spec.stop_timeout_s
        try:
            while self.held and time.monotonic() < deadline:
                self.db.wait(self.inbox, min(0.2, max(0.0, deadline - time.monotonic())))
                self._receive(self.inbox.take_all())
                self.finished, self.deferred = self.deferred + self.finished, []
                self._write_finished()
        except (*CONNECTION_ERRORS, *TRY_LATER):
            pass
        try:
            with self.conn.transaction():
                released = self.conn.execute(sql.RELEASE_LEASES, {
                    "owner": self.owner, "held": list(self.held), "metaservice": self.spec.metaservice,
                    "ticket_type": self.spec.ticket_type, "state": self.spec.state}).rowcount
                self.conn.execute(sql.DEREGISTER_PROCESS, {"owner": self.owner, "processed": self.processed,
                                                           "failed": self.failed})
                self.heartbeat.flush_stats(self.conn)
            log.info("bot %s stopped: %d processed, %d released", self.spec.name, self.processed, released)
        except Exception as exc:  # noqa: BLE001 - a bot that cannot say goodbye still exits
            log.warning("could not deregister cleanly (%s); leases expire on their own", exc)
        self.pool.shutdown()
        self.db.close()
