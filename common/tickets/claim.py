"""get_current_ticket_list and the rest of a sweep (check_ticket_list): what a bot claims, and what else it looks at."""

from common.store import sql
from common.tickets.outcomes import Ticket
from common.tickets.record import wake_closed_waits


def get_current_ticket_list(conn, spec, owner, limit, kind=None, in_hand=()) -> list[Ticket]:
    """Lease up to `limit` due tickets of the bot's state to `owner` (one bot process), as the fleet's lock
    allows: none while it is locked, unless the type (`kind`) runs_when_locked; a type's that is exclusive
    only as the holder of the closed fleet, once the work in hand has finished. Never one of `in_hand`, the
    ids of the tickets the process has in hand, whatever their lease says."""
    exclusive = kind is not None and kind.exclusive
    rows = conn.execute(sql.CLAIM_EXCLUSIVE if exclusive else sql.CLAIM, {
        **_state_params(spec), "limit": limit, "owner": owner, "lease_s": spec.lease_s,
        "runs_when_locked": kind is not None and kind.runs_when_locked, "in_hand": list(in_hand),
    }).fetchall()
    tickets = [Ticket.from_row(row) for row in rows]
    first_taken = [t.id for t in tickets if t.step == 0] if kind is not None and kind.job else []
    if first_taken:  # a job's log says when it started
        conn.execute(sql.JOB_STARTED, {"ids": first_taken, "actor": owner})
    if not conn.autocommit:
        conn.commit()
    return tickets


def take_exclusive(conn, spec, kind, actor) -> bool:
    """Close the fleet for a due ticket of this exclusive type's state, if the lock is free for it; whether
    the fleet is (now or already) held by a ticket of this state, which its bot then claims once the work
    in hand has finished."""
    row = conn.execute(sql.TAKE_EXCLUSIVE, {**_state_params(spec), "by": actor,
                                            "runs_when_locked": kind.runs_when_locked}).fetchone()
    return row["holds_here"]


def claim_tickets_in_unknown_states(conn, spec, ticket_type, owner, limit, in_hand=()) -> list[Ticket]:
    """Lease due tickets of the bot's type whose state the type no longer has (the initial-state bot's duty)."""
    rows = conn.execute(sql.CLAIM_UNKNOWN_STATES, {
        "metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "states": sorted(ticket_type.states),
        "limit": limit, "owner": owner, "lease_s": spec.lease_s, "in_hand": list(in_hand),
    }).fetchall()
    return [Ticket.from_row(row) for row in rows]


def claim_timed_out(conn, spec, owner, limit, in_hand=()) -> list[Ticket]:
    """Lease the open tickets of the bot's state whose lifetime ran out and that no live process holds."""
    rows = conn.execute(sql.CLAIM_TIMED_OUT, {**_state_params(spec), "limit": limit, "owner": owner,
                                              "lease_s": spec.lease_s, "in_hand": list(in_hand)}).fetchall()
    return [Ticket.from_row(row) for row in rows]


def _state_params(spec) -> dict:
    return {"metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "state": spec.state}


def wake_stranded_waits(conn, spec, actor):
    """Make due the tickets of the bot's state whose awaited ticket closed while nobody woke them."""
    stranded = [row["id"] for row in conn.execute(sql.STRANDED_WAITS, _state_params(spec)).fetchall()]
    wake_closed_waits(conn, stranded, actor)


def next_due_in_s(conn, spec):
    """Seconds until the next wait of the bot's state ends or its next round or lifetime's end is due, by the
    one clock (None: nothing to time)."""
    return conn.execute(sql.NEXT_DUE, _state_params(spec)).fetchone()["due_in_s"]


def free_tickets_of(conn, spec, owners) -> int:
    """Make the open tickets of the bot's state that dead processes held claimable now; how many."""
    return conn.execute(sql.FREE_LEASES_OF, {**_state_params(spec), "owners": owners}).rowcount
