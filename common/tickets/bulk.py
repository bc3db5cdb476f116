"""Bulk actions on every open ticket a filter matches, not only a page: send them to a state the graph
allows, or close them with a reason. Each ticket gets its own event naming who did it, written in batches by
the same path as a bot's outcomes (record.py), so graph rules, waiters, webhooks and timers are the same."""

from dataclasses import dataclass

from common.errors import BotfleetError
from common.store import sql
from common.tickets.manual import check_close_reason, close_plan, move_plan, take_unleased
from common.tickets.proceed import Step
from common.tickets.record import add_ticket_to_proceeded_list
from common.tickets.search import TicketFilter

# Tickets locked and written per transaction: big enough that a million is a few thousand statements, small
# enough that a bot wanting one of them waits a moment at most.
BATCH = 200


@dataclass(frozen=True)
class Preview:
    count: int  # open tickets matching now
    max_id: int  # the newest ticket then: the action never touches a ticket created after the preview


def preview(conn, ticket_filter: TicketFilter) -> Preview:
    """What a bulk action would act on: the filter's open tickets (all of them, a payload search included:
    no window here, so this may read the whole table)."""
    wanted = ticket_filter.open_only()
    row = conn.execute(sql.console_bulk_count(wanted.conditions()), wanted.params()).fetchone()
    return Preview(row["n"], row["max_id"] or 0)


def still_matching(conn, ticket_filter: TicketFilter, max_id: int) -> int:
    """How many open tickets, of those up to `max_id`, match now."""
    wanted = ticket_filter.open_only()
    names = [*wanted.conditions(), "max_id"]
    return conn.execute(sql.console_bulk_count(names), {**wanted.params(), "max_id": max_id}).fetchone()["n"]


def send_plans(config, to_state: int):
    return lambda ticket: move_plan(config, ticket, to_state)


def close_plans(reason: str):
    check_close_reason(reason)
    return lambda ticket: close_plan(ticket, reason)


@dataclass
class BulkResult:
    changed: int = 0
    left: int = 0  # matching tickets not changed (held, or locked by another session at that moment)


def act_on_matching(pool, config, ticket_filter: TicketFilter, plan_of, *, max_id: int, actor: str,
                    batch: int = BATCH) -> BulkResult:
    """Apply plan_of(ticket) to each open ticket matching the filter with an id up to `max_id`, oldest first,
    `batch` to a transaction. A ticket a live bot holds is skipped, not waited for (waiting up to seconds
    for each of thousands would make the action endless): the result counts what is left, to try again."""
    wanted = ticket_filter.open_only()
    names = [*wanted.conditions(), "max_id", "after"]
    params = {**wanted.params(), "max_id": max_id, "batch": batch}
    result, after = BulkResult(), 0
    while True:
        with pool.connection() as conn, conn.transaction():
            rows = conn.execute(sql.console_bulk_lock(names), {**params, "after": after}).fetchall()
            if not rows:
                break
            steps = []
            for row in rows:
                ticket = take_unleased(conn, row, actor)
                if ticket is not None:  # else a live bot holds it: left as it is, counted in `left`
                    steps.append(Step(ticket, plan_of(ticket)))
            if steps:
                result.changed += len(add_ticket_to_proceeded_list(conn, config, steps, None, actor).applied)
            after = rows[-1]["id"]
    with pool.connection() as conn:
        result.left = still_matching(conn, ticket_filter, max_id)
    return result


def check_send(config, ticket_filter: TicketFilter, to_state: int) -> None:
    """A bulk send needs one state of one type (the graph is a type's), and a next state of it."""
    if ticket_filter.metaservice is None or ticket_filter.ticket_type is None or ticket_filter.state is None:
        raise BotfleetError("sending in bulk needs a metaservice, a type and a state in the filter")
    kind = config.ticket_type(ticket_filter.metaservice, ticket_filter.ticket_type)
    if not kind.allows(ticket_filter.state, to_state):
        allowed = ", ".join(str(code) for code in kind.next_states(ticket_filter.state)) or "none"
        raise BotfleetError(f"the graph of {kind.metaservice}/{kind.name} does not allow state "
                            f"{ticket_filter.state} → {to_state} (allowed: {allowed})")
