"""Pulling workers (seed 002): the tickets of a state marked `worker: external` are held by workers that
ask for them over HTTP, report progress and finish them; the state's bot is their controller.

A hold is a lease to 'worker:<name>' that ends at the state's stall_timeout after the worker's last
recorded word. A worker is known by its name; the process that uses the name sends a session of its
own, and a second process under a held name is refused. Every function here runs in one transaction,
so a refusal writes nothing.
"""

from psycopg.types.json import Jsonb

from common.errors import BotfleetError, TicketNotFound
from common.store import sql
from common.tickets.manual import move_plan, patched_payload
from common.tickets.outcomes import Plan, Ticket, escalate
from common.tickets.proceed import Step
from common.tickets.read import get_ticket
from common.tickets.record import add_ticket_to_proceeded_list

WORKER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class WorkerBusy(BotfleetError):
    """Another process works under this worker's name, and holds a ticket."""


class NotHeld(BotfleetError):
    """The ticket is not (or no longer) held by this worker."""


class NoExternalWork(BotfleetError):
    """The ticket type has no state worked by external workers."""


def lease_owner(name: str) -> str:
    return sql.WORKER_LEASE_PREFIX + name


def external_specs(config, metaservice=None, ticket_type=None) -> list:
    """The bots of states worked by external workers (of one type, if named), by state."""
    return sorted((s for s in config.bots.values() if s.external
                   and (metaservice is None or (s.metaservice, s.ticket_type) == (metaservice, ticket_type))),
                  key=lambda s: (s.metaservice, s.ticket_type, s.state))


def progress_map(config) -> dict:
    """What RECORD_PROGRESS checks a message against: per external state, its messages and stall_timeout."""
    return {f"{s.metaservice}/{s.ticket_type}/{s.state}": {"messages": list(s.work.progress),
                                                           "stall_s": s.work.stall_timeout_s}
            for s in external_specs(config)}


def _gate(conn, name, session) -> dict:
    """The worker's row, locked for the request; refused while another session holds a ticket under the name."""
    row = conn.execute(sql.WORKER_GATE, {"name": name, "session": session,
                                         "lease_owner": lease_owner(name)}).fetchone()
    if row["session"] != session and row["holds"]:
        raise WorkerBusy(f"worker {name!r} is in use by another process, which holds ticket {row['ticket_id']} "
                         f"until {row['stalls_at']:%Y-%m-%d %H:%M:%S %Z} unless it reports progress: one name is "
                         f"one process (a restarted worker gets the name once the old hold stalls)")
    return row


def next_ticket(conn, config, name, session, metaservice, ticket_type) -> Ticket | None:
    """The oldest due ticket of the type's external states, now held by the worker; None when there is none.
    A ticket the worker still holds is abandoned first (it may be handed out again, to this worker too)."""
    kind = config.ticket_type(metaservice, ticket_type)
    specs = external_specs(config, metaservice, ticket_type)
    if not specs:
        raise NoExternalWork(f"no state of {metaservice}/{ticket_type} is worked by external workers "
                             f"(worker: external in a bot file)")
    with conn.transaction():
        held_id = _gate(conn, name, session)["ticket_id"]
        if held_id is not None:
            _abandon(conn, config, name, held_id)
        row = conn.execute(sql.HAND_OUT if len(specs) == 1 else sql.HAND_OUT_ANY, {
            "metaservice": metaservice, "ticket_type": ticket_type, "state": specs[0].state,
            "states": [s.state for s in specs], "stall_s": [s.work.stall_timeout_s for s in specs],
            "max_attempts": [s.work.max_attempts for s in specs], "runs_when_locked": kind.runs_when_locked,
            "lease_owner": lease_owner(name), "name": name, "session": session}).fetchone()
        if row is not None and kind.job:  # a job's log says when it started
            conn.execute(sql.JOB_STARTED, {"ids": [row["id"]], "actor": lease_owner(name)})
    return Ticket.from_row(row) if row is not None else None


def _abandon(conn, config, name, ticket_id):
    """The worker asked for more while holding a ticket: the ticket goes back to the queue, one attempt
    more; the controller is woken for one that has now used up its attempts."""
    owner = lease_owner(name)
    rows = conn.execute(sql.ABANDON_HOLD, {"lease_owner": owner, "ticket_id": ticket_id,
                                           "kind": "abandoned", "actor": owner}).fetchall()
    limits = {(s.metaservice, s.ticket_type, s.state): s.work.max_attempts for s in external_specs(config)}
    for row in rows:
        if row["attempts"] >= limits.get((row["metaservice"], row["ticket_type"], row["state"]), 0):
            conn.execute(sql.WAKE_BOT, {"channel": row["channel"]})


def record_progress(conn, config, name, session, ticket_id, message) -> bool:
    """Record the time of a progress message of a held ticket, once; False (recording nothing) for a message
    the state does not list, a repeat, or a ticket the worker does not hold."""
    with conn.transaction():
        _gate(conn, name, session)
        row = conn.execute(sql.RECORD_PROGRESS, {"id": ticket_id, "lease_owner": lease_owner(name),
                                                 "message": message, "work": Jsonb(progress_map(config))}).fetchone()
    return row["recorded"] == 1


def finish_ticket(conn, config, name, session, ticket_id, to=None, payload=None) -> Ticket:
    """The worker's ticket takes its normal next state (or `to`, which the graph must allow), with the payload
    merge-patched; the event keeps the hold's progress. Refused, writing nothing, for a ticket not held."""
    owner = lease_owner(name)
    with conn.transaction():
        _gate(conn, name, session)
        row = conn.execute(sql.LOCK_TICKET, {"id": ticket_id}).fetchone()
        if row is None:
            raise TicketNotFound(ticket_id)
        ticket = Ticket.from_row(row)
        if ticket.lease_owner != owner or not row["leased"] or ticket.closed_at is not None:
            raise NotHeld(f"ticket {ticket_id} is not held by worker {name!r}: it was finished, taken back after "
                          f"stall_timeout, or handed to another worker")
        step_plan = move_plan(config, ticket, to)
        progress = {r["message"]: r["at"].isoformat() for r in conn.execute(sql.TAKE_PROGRESS, {"id": ticket_id})}
        step_plan.detail = {**(step_plan.detail or {}), "worker": name, "progress": progress}
        step = Step(ticket, step_plan, payload=patched_payload(config, ticket, payload))
        add_ticket_to_proceeded_list(conn, config, [step], owner, owner)
    return get_ticket(conn, ticket_id)


def list_workers(conn) -> list[dict]:
    """Every worker known by name: first and last contact, and the ticket it holds now (with when it stalls)."""
    return conn.execute(sql.LIST_WORKERS).fetchall()


# -- the controller: the bot of an external state ----------------------------------------------------


def take_back_stalled(conn, spec, actor) -> int:
    """Tickets of the state whose worker was silent past stall_timeout, back in the queue; how many."""
    return len(conn.execute(sql.TAKE_BACK_STALLED, {
        "metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "state": spec.state,
        "kind": "stalled", "actor": actor}).fetchall())


def claim_exhausted(conn, spec, kind, owner, limit, in_hand=()) -> list[Ticket]:
    """Lease the tickets of the state abandoned max_attempts times, to fail them (as the fleet's lock allows)."""
    rows = conn.execute(sql.CLAIM_EXHAUSTED, {
        "metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "state": spec.state, "owner": owner,
        "lease_s": spec.lease_s, "limit": limit, "max_attempts": spec.work.max_attempts,
        "runs_when_locked": kind.runs_when_locked, "in_hand": list(in_hand)}).fetchall()
    return [Ticket.from_row(row) for row in rows]


def next_stall_in_s(conn, spec) -> float | None:
    """Seconds of real time until the first worker's hold of the state stalls (None: no hold)."""
    return conn.execute(sql.NEXT_STALL, {"metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                                         "state": spec.state}).fetchone()["due_in_s"]


def exhausted_step(ticket: Ticket, ticket_type, spec) -> Step:
    """A ticket no worker finished in max_attempts holds: the state's failure_state, else one error ticket
    (it waits for it, and is handed out again only once that is resolved). Never handed out as it is."""
    reason = f"no worker finished it in {ticket.attempts} holds (max_attempts {spec.work.max_attempts})"
    target = spec.work.failure_state
    if target is None:
        return Step(ticket, escalate(ticket, ticket_type, reason))
    return Step(ticket, Plan(to_state=target, kind="transitioned", detail={"reason": reason},
                             closes=ticket_type.states[target].final))
