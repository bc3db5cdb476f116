"""Handlers the tests' bot processes run (import path tests.handlers:<name>)."""

import os
import time
from pathlib import Path


def advance(ticket, ctx):
    return None


def _mark(ticket, what):
    folder = os.environ.get("BOTFLEET_TEST_MARKS")
    if folder:
        # One file per event, named so that a test can count and order them without parsing.
        Path(folder, f"{time.time():.6f}-{os.getpid()}-{ticket.id}-{ticket.state}-{what}").touch()


def record(ticket, ctx):
    """Advance, leaving a mark per handler start."""
    _mark(ticket, "start")
    return None


def slow(ticket, ctx):
    """Mark the start, sleep payload.sleep_s, advance: a ticket to kill a bot in the middle of."""
    _mark(ticket, "start")
    time.sleep(float(ticket.payload.get("sleep_s", 0)))  # the slow work itself; tests poll until it starts
    return None


def flaky(ticket, ctx):
    """Raise until the ticket has failed payload.fail_times times, then advance."""
    if ticket.attempts < int(ticket.payload.get("fail_times", 0)):
        raise RuntimeError(f"failure {ticket.attempts + 1}")
    return None


def stuck(ticket, ctx):
    """Ask for no next state: every next state is 'unavailable'."""
    return ctx.send_ticket(unavailable=ctx.ticket_type.next_states(ticket.state))


def spawn_and_wait(ticket, ctx):
    """Create a child ticket once, wait for it to close, then advance (children just advance)."""
    if "from" not in ticket.payload and "child" not in ticket.payload:
        child = ctx.create_ticket(ticket.ticket_type, {"from": ticket.id})
        ticket.payload["child"] = "pending"
        return ctx.wait_until_ticket(child)
    return None


# What a handler can ask for that the database would refuse; the ticket's payload names which.
POISONS = {
    "set": lambda ticket, ctx: ticket.payload.__setitem__("x", {1, 2}),
    "nul": lambda ticket, ctx: ticket.payload.__setitem__("x", "a\x00b"),
    "big": lambda ticket, ctx: ticket.payload.__setitem__("x", "x" * 2_000_000),
    "child": lambda ticket, ctx: ctx.create_ticket("no_such_type") and None,
    # A payload a trigger of the test's database refuses: a write that fails in the database itself.
    "refused": lambda ticket, ctx: ticket.payload.__setitem__("refuse_write", True),
}


def poison(ticket, ctx):
    """Advance, after asking for the poison `payload.poison` names, if any."""
    kind = ticket.payload.get("poison")
    if kind:
        POISONS[kind](ticket, ctx)
    return None


def wait_an_hour_once(ticket, ctx):
    """Wait an hour by ctx.wait (payload.until: by wait_until_time, an hour after ctx.now()), then advance."""
    if ticket.payload.get("waited"):
        return None
    ticket.payload["waited"] = True
    if ticket.payload.get("until"):
        from datetime import timedelta
        return ctx.wait_until_time(ctx.now() + timedelta(hours=1))
    return ctx.wait(3600)


def assign_from_payload(ticket, ctx):
    """Assign payload.assign (or accept for payload.accept), then advance."""
    if "accept" in ticket.payload:
        ctx.accept(ticket.payload["accept"])
    else:
        ctx.set_assigned_user(ticket.payload.get("assign"))
    return None


def wait_for_acceptance(ticket, ctx):
    """Stay until a member accepts (an hour's wait, which acceptance cuts short), then advance."""
    return ctx.wait_for_acceptance()


def notify_creator(ticket, ctx):
    """Tell the ticket's creator, then advance."""
    ctx.send_user_notification(ticket.creator, f"ticket {ticket.id} moved on")
    return None


def wait_an_hour(ticket, ctx):
    return ctx.wait(3600)


def wait_ten_minutes_once(ticket, ctx):
    """Park the ticket for ten minutes once, then advance."""
    if ticket.payload.get("parked"):
        return None
    ticket.payload["parked"] = True
    return ctx.wait(600)


def message_a_bot(ticket, ctx):
    """Send payload.to a message of kind payload.kind with the outcome, then advance."""
    ctx.send_bot_notification(ticket.payload["to"], f"about ticket {ticket.id}", kind=ticket.payload.get("kind", "hello"))
    return None


def on_hello(message):
    """A message of kind hello: nothing to do but be received."""


def on_boom(message):
    raise RuntimeError(f"cannot take message {message.id}")


def hang_first_run(ticket, ctx):
    """Mark the start; the ticket's first run hangs (payload.hang_s), later ones advance at once: a handler
    whose retry finishes while the run given up for overrunning handler_timeout still hangs."""
    folder = os.environ.get("BOTFLEET_TEST_MARKS")
    first = folder is not None and not list(Path(folder).glob(f"*-{ticket.id}-{ticket.state}-start"))
    _mark(ticket, "start")
    if first:
        time.sleep(float(ticket.payload.get("hang_s", 30)))  # overruns handler_timeout; given up meanwhile
    return None


def on_slow(message):
    """A message handler that takes a while (body text: seconds): longer than handler_timeout, in tests."""
    time.sleep(float(message.body.get("text", "3")))


def job_work(ticket, ctx):
    """A job's work, as its payload `mode` says: raise, overrun handler_timeout, or wait a day."""
    mode = ticket.payload.get("mode")
    if mode == "raise":
        raise RuntimeError("smtp down")
    if mode == "overrun":
        time.sleep(30)  # far past the test bot's handler_timeout: given up meanwhile
    if mode == "wait":
        return ctx.wait(86400)
    return None


def submit_job(ticket, ctx):
    """A submitter (seed 000's PM): create a job of payload `job_type` with payload `mode`, wait for it,
    then move on; the job's end is in payload.woken_by."""
    if "woken_by" not in ticket.payload:
        job = ctx.create_ticket(ticket.payload["job_type"], {"name": "work", "mode": ticket.payload.get("mode")})
        return ctx.wait_until_ticket(job)


def fail_until_woken(ticket, ctx):
    """Give up (one error ticket) until a closed ticket it waited for woke it, then advance."""
    return None if "woken_by" in ticket.payload else ctx.fail("needs a person")


def spawn_then_fail_once(ticket, ctx):
    """Create a child and name its id in the payload; the first run raises after planning its child, naming the
    child's id. Children just advance."""
    if "from" in ticket.payload:
        return None
    child = ctx.create_ticket(ticket.ticket_type, {"from": ticket.id})
    if ticket.attempts == 0:
        raise RuntimeError(f"planned child {child.id}, then failed")
    ticket.payload["child_id"] = child.id
    return None
