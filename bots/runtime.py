"""The bot process: one (metaservice, ticket type, state), a pool of handler threads, one control loop.

The control loop owns the work connection and does everything that touches it: claims, writing
outcomes, heartbeats. A listener thread with its own connection turns NOTIFY into a wake-up
(psycopg serialises a connection's queries with its notification waits, so LISTEN cannot share).
Handler threads only run handlers and hand their steps back through the inbox; outcomes that pile
up while the loop is busy are written together in one transaction.
"""

import logging
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import psycopg

from bots.listener import Listener
from bots.mail import MailDuty
from bots.messages import parse_notification
from bots.status_expiry import StatusExpiryDuty
from bots.sweeper import SweepDuty
from bots.webhooks import WebhookDuty
from common.config.handlers import import_handler
from common.people.directory import unknown_users
from common.store import sql
from common.store.botstats import BotStats
from common.store.connect import close_quietly, connect
from common.store.processes import process_owner, register_process
from common.store.reconnect import Backoff
from common.store.revision import check_schema
from common.store.sync import sync_config
from common.tickets.claim import (
    claim_tickets_in_unknown_states,
    claim_timed_out,
    free_tickets_of,
    get_current_ticket_list,
    next_due_in_s,
    take_exclusive,
    wake_stranded_waits,
)
from common.tickets.proceed import failed_step, proceed_ticket, timeout_fallback, timeout_step, unknown_state_step
from common.tickets.record import Written, add_ticket_to_proceeded_list
from common.tickets.timers import purge_closed, report_stuck, send_due_rounds
from common.tickets.workers import claim_exhausted, exhausted_step, take_back_stalled

log = logging.getLogger("botfleet.bot")

LISTEN_START_TIMEOUT_S = 10  # the first sweep waits this long at most for LISTEN to be in place
EXCLUSIVE_DRAIN_POLL_S = 0.25  # how often a bot holding the fleet for its exclusive ticket looks for the work in hand to end
MESSAGES_PER_BATCH = 100  # messages from other bots taken per transaction
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
EX_SOFTWARE = getattr(os, "EX_SOFTWARE", 70)
# The database gave up on a statement for us (a lock held elsewhere, a statement too slow): not a lost
# connection, and not the step's fault. Both are OperationalErrors, so they are caught first.
TRY_LATER = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)
WAKE = "wake"  # something may be due: claim
STOP = "stop"


@dataclass(frozen=True)
class Started:
    """When a handler thread began to run a ticket's handler."""

    ticket: object
    at_mono: float
    overrun: object = None  # the step written if it overruns handler_timeout, from the reason; None: a failure


@dataclass(frozen=True)
class Released:
    """A ticket a handler thread gave up without an outcome."""

    ticket_id: int


class BotRuntime:
    def __init__(self, config, spec, url, *, handler=None):
        self.config = config
        self.spec = spec
        self.url = url
        self.ticket_type = config.ticket_type(spec.metaservice, spec.ticket_type)
        self.handler = (handler if handler is not None or spec.final or spec.duty or spec.external
                        else import_handler(spec))
        duties = {"mail": MailDuty, "webhook": WebhookDuty, "sweep": SweepDuty, "status": StatusExpiryDuty}  # a built-in bot's own work, instead of tickets
        # wake: a duty that works on threads of its own (network I/O) calls it when it has results for the loop.
        self.duty = duties[spec.duty](config, spec.name, wake=self._wake) if spec.duty in duties else None
        # Messages from other bots go to on_<kind> functions of the module the handler lives in.
        self.handler_module = sys.modules.get(self.handler.__module__) if self.handler is not None else None
        # The type's own timeout handler, if the module has one (else the built-in ticket_timeout).
        self.timeout_hook = getattr(self.handler_module, "ticket_timeout", None)
        self.owner = process_owner(spec.name)
        self.channel = sql.channel(spec.metaservice, spec.ticket_type, spec.state)
        self.capacity = max(spec.batch_size, spec.threads)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self._wake_pending = threading.Event()
        self._messages_pending = threading.Event()
        self.listener = Listener(url, (self.channel, sql.LOCK_CHANNEL), f"{spec.name}:listen", self._wake,
                                 self.stopping, on_failure=lambda exc: self.fail(f"the listener thread died: {exc!r}"))
        self.failure = None  # why the bot stops on its own, if it does: it then exits EX_SOFTWARE
        heartbeat_ms = config.heartbeat_interval_s * 1000
        # Half a heartbeat for a lock, the watchdog's hung threshold for any statement: past that,
        # giving up and trying again later is better than being killed for silence.
        self.session_timeouts = {
            "lock_timeout_ms": max(1, int(heartbeat_ms / 2)),
            "statement_timeout_ms": max(1, int(config.hung_after_s * 1000))}
        # A peer silent for as long as the watchdog takes to call a bot hung is dead: its tickets are freed.
        self.dead_after_s = config.hung_after_s
        self.connected_at_mono = 0.0
        self.deferred: list = []  # steps whose ticket row someone else had locked: written at the next heartbeat
        self.running: dict = {}  # ticket id -> Started, for the handlers running now
        self.timed_out: set = set()  # tickets whose handler overran handler_timeout and still runs
        self.conn = None
        self.pool = None
        self.held: set = set()  # ids of the tickets claimed and not yet written
        self.finished: list = []
        self.processed = 0
        self.failed = 0
        self.stats = BotStats()  # deltas since the last batch was taken
        self.stats_seq = 0
        self.unsent_stats = None  # the batch taken and not known to be written: sent again, as it was
        self.want_claim = True
        self.next_due_mono = None

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        """Register, sweep once, then serve notifications and sweeps until stop(). Returns the exit code."""
        self.conn = self._connect()
        check_schema(self.conn)
        sync_config(self.conn, self.config, bot_names={self.spec.name})
        with self.conn.transaction():
            self._free_leases_of(register_process(self.conn, self.spec.name, self.owner))
        log.info("bot %s registered as %s", self.spec.name, self.owner)
        self.pool = ThreadPoolExecutor(self.spec.threads, thread_name_prefix=self.spec.name)
        self.listener.start()
        # Listen first so nothing that commits from now on is missed, but act on nothing before the
        # first sweep: tickets that arrived while the bot was down go first.
        self.listener.listening.wait(timeout=LISTEN_START_TIMEOUT_S)
        self._drain_wakes()
        self._sweep()
        log.info("first sweep: claimed %d ticket(s)", len(self.held))
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
        interval_s = self.config.heartbeat_interval_s
        next_heartbeat = time.monotonic() + interval_s
        next_sweep = time.monotonic() + self.spec.sweep_interval_s
        while not self.stopping.is_set():
            deadline = min(next_heartbeat, next_sweep, self.next_due_mono or float("inf"),
                           self._next_handler_deadline())
            self._receive(max(0.0, deadline - time.monotonic()))
            self._time_out_handlers()
            try:
                self._write_finished()
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + interval_s
                    self._heartbeat()
                    self.finished, self.deferred = self.deferred + self.finished, []
                if now >= next_sweep:
                    next_sweep = now + self.spec.sweep_interval_s
                    self._sweep()
                if self.next_due_mono is not None and now >= self.next_due_mono:
                    self.next_due_mono = None
                    self.want_claim = True
                    self._timers()
                if self.want_claim and not self.stopping.is_set():
                    self._claim()
                if self._messages_pending.is_set():
                    self._messages_pending.clear()
                    self._handle_messages()
            except TRY_LATER as exc:
                log.warning("gave up waiting on the database (%s); trying again later", str(exc).strip())
            except CONNECTION_ERRORS as exc:
                log.warning("database connection lost (%s); reconnecting", exc)
                self._reconnect()
                next_sweep = time.monotonic()  # notifications were lost meanwhile

    def _receive(self, timeout_s):
        """Wait for the first message (up to timeout_s), then take everything else already queued."""
        try:
            message = self.inbox.get(timeout=timeout_s) if timeout_s > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if message is WAKE:
                self._wake_pending.clear()
                self.want_claim = True
            elif message is STOP:
                pass
            elif isinstance(message, Released):
                self.held.discard(message.ticket_id)
                self.want_claim = True
            elif message.ticket.id in self.timed_out:
                # The handler came back after its step was written as timed out: its outcome is void.
                self.timed_out.discard(message.ticket.id)
                self.want_claim = True
            else:
                self.finished.append(message)
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _next_handler_deadline(self) -> float:
        starts = [started.at_mono for started in list(self.running.values())]
        return min(starts, default=float("inf")) + self.spec.handler_timeout_s

    def _time_out_handlers(self):
        """A handler that overruns handler_timeout fails its step now; its thread is left to finish."""
        now = time.monotonic()
        for ticket_id, started in list(self.running.items()):
            if now - started.at_mono < self.spec.handler_timeout_s or self.running.pop(ticket_id, None) is None:
                continue
            self.timed_out.add(ticket_id)
            log.warning("handler of ticket %s ran longer than handler_timeout (%gs)", ticket_id,
                        self.spec.handler_timeout_s)
            reason = f"the handler ran longer than handler_timeout ({self.spec.handler_timeout_s:g}s)"
            self.finished.append(started.overrun(reason) if started.overrun is not None else failed_step(
                started.ticket, self.ticket_type, self.spec, reason, handler_s=now - started.at_mono))
        if len(self.timed_out) >= self.spec.threads and not self.stopping.is_set():
            self.fail(f"all {self.spec.threads} handler threads are stuck in handlers past handler_timeout")

    def _drain_wakes(self):
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                break
            if message is STOP:
                self.stopping.set()
        self._wake_pending.clear()

    def _sweep(self):
        """check_ticket_list: claim whatever is due in this state, and learn when the next wait ends."""
        wake_stranded_waits(self.conn, self.spec, self.spec.name)
        if self.spec.state == self.ticket_type.initial:
            for ticket in claim_tickets_in_unknown_states(self.conn, self.spec, self.ticket_type, self.owner,
                                                          self.spec.batch_size):
                log.warning("ticket %s is in state %s, which %s/%s does not have: raising an error ticket",
                            ticket.id, ticket.state, self.spec.metaservice, self.spec.ticket_type)
                self.held.add(ticket.id)
                self.finished.append(unknown_state_step(ticket, self.ticket_type))
        if self.duty is None and not self.spec.external:  # a duty bot's sweep is its duty, and a controller's
            self.want_claim = True                          # its workers': run by _timers
            self._claim()
        self._timers()
        self._handle_messages()

    def _handle_messages(self):
        """parse_notification for this bot's unhandled messages, a batch at a time: each is handled or
        rejected (recorded, logged with its sender, counted), and the bot carries on either way."""
        while True:
            with self.conn.transaction():
                rows = self.conn.execute(sql.TAKE_BOT_MESSAGES, {"bot": self.spec.name,
                                                                 "limit": MESSAGES_PER_BATCH}).fetchall()
                for row in rows:
                    outcome, error = parse_notification(self.handler_module, row)
                    if error:
                        log.warning("rejected message %s of kind %r from %s: %s", row["id"], row["kind"],
                                    row["sender"], error)
                        self.stats.counters["notifications_rejected"] += 1
                    self.conn.execute(sql.FINISH_BOT_MESSAGE, {"id": row["id"], "outcome": outcome, "error": error})
            if len(rows) < MESSAGES_PER_BATCH:
                return

    def _timers(self):
        """Send the acceptance rounds and reminders due in this state, then set the timer for what is next:
        the end of a wait, or the next round."""
        if self.duty is not None:
            due_in_s = self.duty.run(self.conn)
            if due_in_s is not None:
                self._due_at_in(max(0.0, due_in_s))
            return
        if self.spec.external:  # before the lifetime's timeouts, which would take a stalled hold unrecorded
            self._control_workers()
        if not self.spec.final:
            self.stats.counters["reminders"] += send_due_rounds(self.conn, self.spec, self.ticket_type, self.spec.name)
            self._time_out_tickets()
            self.stats.counters["error_tickets"] += report_stuck(self.conn, self.config, self.spec, self.ticket_type,
                                                                 self.spec.name)
        # The seed's last step accumulates closed tickets and clears them after the retention; a ticket
        # closed by hand where it stood is cleared by the bot of that state.
        purged, more = purge_closed(self.conn, self.spec, self.ticket_type)
        if purged:
            log.info("removed %d ticket(s) closed longer than the retention (%s)", purged, self.ticket_type.on_retention)
            if more:
                self._due_at_in(0)  # more left: go on at the next turn of the loop
        due_in_s = next_due_in_s(self.conn, self.spec)
        if due_in_s is not None:
            self._due_at_in(max(0.0, due_in_s))

    def _time_out_tickets(self):
        """ticket_timeout for the tickets of this state that outlived their lifetime: claimed like any
        ticket, and written as a step (at most one per ticket: the step records timed_out_at)."""
        free = self.capacity - len(self.held) - len(self.timed_out)
        if free <= 0:
            return  # the next sweep or timer comes back for them
        tickets = claim_timed_out(self.conn, self.spec, self.owner, free)
        if not tickets:
            return
        nobody = set(unknown_users(self.conn, [t.creator for t in tickets if t.creator]))
        for ticket in tickets:
            log.info("ticket %s outlived its lifetime in state %s", ticket.id, ticket.state)
            self.held.add(ticket.id)
            creator_is_user = bool(ticket.creator) and ticket.creator not in nobody
            if self.timeout_hook is None:
                self.finished.append(timeout_step(ticket, self.config, self.spec, creator_is_user))
            else:  # code of the type's: run like a handler, on a handler thread, under handler_timeout
                self.pool.submit(self._proceed, ticket, partial(
                    timeout_step, ticket, self.config, self.spec, creator_is_user, self.timeout_hook),
                    overrun=partial(timeout_fallback, ticket, self.config, self.spec, creator_is_user))

    def _claim(self):
        # No handler runs for a final state, a duty bot or the controller of external workers: a WAKE for
        # the last two is for their work in _timers (a controller's: a hold was handed out, to time its stall).
        if self.spec.final or self.duty is not None or self.spec.external:
            if (self.duty is not None or self.spec.external) and self.want_claim:
                self._due_at_in(0)
            self.want_claim = False
            return
        # A thread stuck in an overrunning handler serves nobody until it returns.
        free = self.capacity - len(self.held) - len(self.timed_out)
        if free <= 0:
            return  # claim again once handlers hand tickets back
        exclusive = self.ticket_type.exclusive
        holds_fleet = exclusive and take_exclusive(self.conn, self.spec, self.ticket_type, self.spec.name)
        tickets = get_current_ticket_list(self.conn, self.spec, self.owner, free, self.ticket_type)
        for ticket in tickets:
            self.held.add(ticket.id)
            self.pool.submit(self._proceed, ticket)
        # A full batch means more may be waiting.
        self.want_claim = len(tickets) == free
        if holds_fleet and not tickets:
            # The fleet is closed for this state's ticket: it starts once the work in hand has finished,
            # which no notification announces.
            self._due_at_in(EXCLUSIVE_DRAIN_POLL_S)

    def _control_workers(self):
        """The controller of a state worked by external workers (seed 002): holds whose worker fell silent go
        back to the queue, and tickets abandoned max_attempts times are failed. The end of _timers sets the
        timer for the soonest hold to stall (a hold's due_at)."""
        stalled = take_back_stalled(self.conn, self.spec, self.spec.name)
        if stalled:
            log.info("took back %d ticket(s) whose worker was silent past stall_timeout (%gs)", stalled,
                     self.spec.work.stall_timeout_s)
        free = self.capacity - len(self.held) - len(self.timed_out)
        if free <= 0:
            return  # the next turn comes back for them
        tickets = claim_exhausted(self.conn, self.spec, self.ticket_type, self.owner, free)
        for ticket in tickets:
            log.warning("ticket %s was abandoned by workers %d times: failing it", ticket.id, ticket.attempts)
            self.held.add(ticket.id)
            self.finished.append(exhausted_step(ticket, self.ticket_type, self.spec))
        if len(tickets) == free:
            self._due_at_in(0)  # more may be waiting

    def _proceed(self, ticket, run=None, overrun=None):
        # Read by the control loop for handler_timeout; a dict item is set and popped atomically, which
        # saves a message through the inbox per ticket.
        self.running[ticket.id] = Started(ticket, time.monotonic(), overrun)
        try:
            step = run() if run is not None else proceed_ticket(ticket, self.config, self.handler, self.spec)
            self.running.pop(ticket.id, None)
            self.inbox.put(step)
        except BaseException:
            self.running.pop(ticket.id, None)
            # Not a handler failure (those become steps) but a bug of ours: let the ticket go, so its
            # lease runs out instead of being renewed forever, and another attempt can be made.
            log.exception("could not proceed ticket %s; its lease will expire", ticket.id)
            self.inbox.put(Released(ticket.id))

    def _write_finished(self):
        if not self.finished:
            return
        steps, self.finished = self.finished, []
        try:
            written, steps, deferred = self._write(steps)
        except CONNECTION_ERRORS:
            self.finished = steps + self.finished  # written after reconnecting; the step check keeps it once
            raise
        self.deferred += deferred
        self.held.difference_update(s.ticket.id for s in steps)
        self._count(steps, written.applied)
        for row in written.applied:  # the database says when each wait ends, by its clock
            if row["due_in_s"] is not None and row["due_in_s"] > 0:
                self._due_at_in(row["due_in_s"])
        if written.stale:
            log.info("skipped %d outcome(s) already written by another process: tickets %s",
                     len(written.stale), [s.ticket.id for s in written.stale])
        self.want_claim = True

    def _write(self, steps) -> tuple[Written, list, list]:
        """Write a batch of outcomes; (what was written, the steps as written, the steps deferred).

        A step the database refuses must not take the batch, or the bot, down with it: the batch is
        then written step by step, and a step that still fails becomes that step's failure (an error
        event, retries, then one error ticket), as if its handler had raised. A step whose ticket row
        someone else holds locked is deferred, and written after the next heartbeat.
        """
        try:
            return add_ticket_to_proceeded_list(self.conn, self.config, steps, self.owner, self.spec.name), steps, []
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
                one, step = self._write_one(step)
            except TRY_LATER:
                deferred.append(step)
                continue
            written.applied += one.applied
            written.stale += one.stale
            as_written.append(step)
        return written, as_written, deferred

    def _write_one(self, step) -> tuple[Written, object]:
        try:
            return add_ticket_to_proceeded_list(self.conn, self.config, [step], self.owner, self.spec.name), step
        except (*TRY_LATER, *CONNECTION_ERRORS):
            raise
        except Exception as exc:
            log.warning("the outcome of ticket %s cannot be written (%s); recorded as a failed step", step.ticket.id, exc)
            failure = failed_step(step.ticket, self.ticket_type, self.spec,
                                  f"its outcome could not be written: {type(exc).__name__}: {exc}", step.hop_s,
                                  step.handler_s)
        try:
            return add_ticket_to_proceeded_list(self.conn, self.config, [failure], self.owner, self.spec.name), failure
        except CONNECTION_ERRORS:
            raise
        except Exception:
            # Not even the failure can be written: let the ticket go; its lease runs out and it is tried again.
            log.exception("could not record the failure of ticket %s; its lease will expire", step.ticket.id)
            return Written([], []), failure

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

    def _due_at_in(self, delay_s):
        due = time.monotonic() + delay_s
        self.next_due_mono = due if self.next_due_mono is None else min(self.next_due_mono, due)

    def _heartbeat(self):
        row = self.conn.execute(sql.HEARTBEAT, {
            "owner": self.owner, "lease_s": self.spec.lease_s, "held": list(self.held), "processed": self.processed,
            "failed": self.failed, "bot": self.spec.name, "dead_after_s": self.dead_after_s}).fetchone()
        self._flush_stats()
        # A process that has itself just come back (after an outage) would take every peer for dead.
        if row and row["silent_peers"] and time.monotonic() - self.connected_at_mono >= self.dead_after_s:
            retired = [r["instance_id"] for r in self.conn.execute(sql.RETIRE_SILENT_PROCESSES, {
                "bot": self.spec.name, "owner": self.owner, "dead_after_s": self.dead_after_s}).fetchall()]
            self._free_leases_of(retired)

    def _free_leases_of(self, owners):
        """Make the tickets of dead processes of this bot claimable now, and claim them."""
        if not owners:
            return
        freed = free_tickets_of(self.conn, self.spec, owners)
        log.info("process(es) %s are dead: %d ticket(s) of theirs are claimable now", ", ".join(owners), freed)
        self.want_claim = True

    def _flush_stats(self):
        """Add the counts to bot_stats once: a batch whose reply was lost is sent again under its sequence
        number (the database adds it only if it did not already), and counts since go in the next batch."""
        if self.unsent_stats is None:
            if self.stats.empty():
                return
            self.stats_seq += 1
            self.unsent_stats = {**self.stats.params(self.spec.name), "seq": self.stats_seq, "owner": self.owner}
            self.stats.reset()
        self.conn.execute(sql.ADD_BOT_STATS, self.unsent_stats)
        self.unsent_stats = None

    # -- connections -----------------------------------------------------------------------------
    def _connect(self):
        conn = connect(self.url, autocommit=True, application_name=self.spec.name)
        self.connected_at_mono = time.monotonic()
        conn.execute(sql.BOT_SESSION_SETUP)
        conn.execute(sql.BOT_SESSION_TIMEOUTS, self.session_timeouts)
        return conn

    def _reconnect(self):
        close_quietly(self.conn)
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                self.conn = self._connect()
                log.info("reconnected to the database")
                return
            except psycopg.OperationalError as exc:
                delay_s = backoff.next_s()
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay_s)
                self.stopping.wait(delay_s)

    def _wake(self, payload=""):
        if payload == "message":  # another bot sent this one a message (or the listener reconnected)
            self._messages_pending.set()
        if not self._wake_pending.is_set():
            self._wake_pending.set()
            self.inbox.put(WAKE)

    # -- stopping --------------------------------------------------------------------------------
    def _shutdown(self):
        """Finish what is in hand within stop_timeout, release the rest, deregister."""
        deadline = time.monotonic() + self.spec.stop_timeout_s
        while self.held and time.monotonic() < deadline:
            self._receive(min(0.2, max(0.0, deadline - time.monotonic())))
            self.finished, self.deferred = self.deferred + self.finished, []
            try:
                if self.finished:
                    self._write_finished()
            except psycopg.OperationalError:
                break
        try:
            with self.conn.transaction():
                released = self.conn.execute(sql.RELEASE_LEASES, {
                    "owner": self.owner, "held": [*self.held, *self.timed_out], "metaservice": self.spec.metaservice,
                    "ticket_type": self.spec.ticket_type, "state": self.spec.state}).rowcount
                self.conn.execute(sql.DEREGISTER_PROCESS, {"owner": self.owner, "processed": self.processed,
                                                           "failed": self.failed})
                self._flush_stats()
            log.info("bot %s stopped: %d processed, %d released", self.spec.name, self.processed, released)
        except psycopg.Error as exc:
            log.warning("could not deregister cleanly (%s); leases expire on their own", exc)
        self.pool.shutdown(wait=False, cancel_futures=True)
        close_quietly(self.conn)
