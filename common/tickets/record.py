"""add_ticket_to_proceeded_list: write a batch of outcomes, each with its events and NOTIFY, exactly once."""

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from common.errors import AssigneeRefused, BotfleetError
from common.notifications.bot_messages import check_message, send_bot_notification
from common.notifications.outbox import send_user_notification
from common.people.directory import refused_assignees, unknown_users
from common.store import sql
from common.tickets.create import create_ticket
from common.tickets.error_tickets import is_error_ticket, raise_error_ticket
from common.tickets.outcomes import PendingTicket

TICKETS_KEY = "pk_tickets"  # the primary key of tickets, by the schema's naming convention


def _apply_params(steps, owner, actor):
    def waiting_id(step):
        target = step.plan.waiting_for
        return target.id if isinstance(target, PendingTicket) else target

    return {
        "owner": owner, "actor": actor,
        "ids": [s.ticket.id for s in steps], "steps": [s.ticket.step for s in steps],
        "from_states": [s.ticket.state for s in steps], "to_states": [s.plan.to_state for s in steps],
        "closes": [s.plan.closes for s in steps], "due_in_s": [s.plan.due_in_s for s in steps],
        "due_at": [s.plan.due_at for s in steps],
        "waiting_for": [waiting_id(s) for s in steps],
        "payloads": [s.payload for s in steps],  # JSON text, cast to jsonb by the statement
        "set_assignee": [s.assignee is not None for s in steps],
        "assignees": [s.assignee[0] if s.assignee else None for s in steps],
        "assign_kinds": [s.assignee[1] if s.assignee else None for s in steps],
        "attempts": [s.plan.attempts for s in steps], "kinds": [s.plan.kind for s in steps],
        "times_out": [s.plan.times_out for s in steps],
        "details": [Jsonb(_detail(s, waiting_id(s))) if s.plan.detail is not None else None for s in steps],
    }


def _detail(step, waiting_id):
    """The event's detail; a wait for a child created in the same step names the child, now it has an id."""
    if isinstance(step.plan.waiting_for, PendingTicket) and step.plan.kind == "waited":
        return {**step.plan.detail, "ticket": waiting_id}
    return step.plan.detail


def _insert_children(conn, config, step, actor):
    for child in step.plan.children:
        if is_error_ticket(child) and child.id is None:
            # Raised by the runtime (a handler's children have their ids): an open one takes the reason.
            child.id = raise_error_ticket(conn, config, child, parent_id=step.ticket.id, actor=actor)
            continue
        child.id = create_ticket(conn, config, child.metaservice, child.ticket_type, child.payload, creator=actor,
                                 group_role=child.group_role, parent_id=step.ticket.id, ids=[child.id])


@dataclass
class Written:
    applied: list  # rows of the tickets whose outcome was written
    stale: list  # steps whose ticket had moved on (another process already wrote this step)


def add_ticket_to_proceeded_list(conn, config, steps, owner, actor) -> Written:
    """Write a batch of outcomes; each ticket's change, events and NOTIFY commit together.

    On an autocommit connection (a bot's) a batch without child tickets is one statement and one
    durable commit; on any other connection it joins the caller's transaction. A step whose ticket
    is no longer at the claimed step (or no longer leased by `owner`) is skipped: some other
    process already applied it, and writing it again would duplicate the transition.
    """
    refused = refused_assignees(conn, [(s.ticket.id, s.assignee[0]) for s in steps if s.assignee])
    if refused:
        raise AssigneeRefused("; ".join(refused[key] for key in sorted(refused)))
    nobody = unknown_users(conn, [user for s in steps for user, _, _ in s.notifications])
    if nobody:
        raise BotfleetError(f"no user named {', '.join(nobody)} to notify")
    for bot, _, kind in (message for s in steps for message in s.bot_messages):
        check_message(config, bot, kind)
    applied = []
    simple = [s for s in steps if not s.plan.children and not s.notifications and not s.bot_messages]
    if simple:
        applied += conn.execute(sql.APPLY_OUTCOMES, _apply_params(simple, owner, actor)).fetchall()
    for step in (s for s in steps if s.plan.children or s.notifications or s.bot_messages):
        # Children and notifications are written only if their step's outcome is: the transaction undoes
        # them otherwise.
        try:
            with conn.transaction() as transaction:
                _insert_children(conn, config, step, actor)
                rows = conn.execute(sql.APPLY_OUTCOMES, _apply_params([step], owner, actor)).fetchall()
                if not rows:
                    raise psycopg.Rollback(transaction)
                for user, text, kind in step.notifications:
                    send_user_notification(conn, step.ticket.id, user, text, kind=kind, mail=config.mail is not None)
                for bot, text, kind in step.bot_messages:
                    send_bot_notification(conn, config, step.ticket.id, bot, text, kind=kind, sender=actor)
                applied += rows
        except psycopg.errors.UniqueViolation as exc:
            # A child's id, taken for this step's plan alone, is there already: this very step was written
            # (its reply was lost), and is stale now.
            if exc.diag.constraint_name != TICKETS_KEY:
                raise
    wake_closed_waits(conn, _closed_with_waiters(applied) + _mark_awaited_in_batch(conn, applied), actor)
    applied_ids = {r["id"] for r in applied}
    return Written(applied, [s for s in steps if s.ticket.id not in applied_ids])


def _mark_awaited_in_batch(conn, applied) -> list:
    """Tell tickets awaited by a waiter of the same batch that they have a waiter (APPLY_OUTCOMES cannot
    update a row twice); those already closed are returned, to be woken now."""
    here = {r["id"] for r in applied}
    closed_here = {r["id"] for r in applied if r["closes"]}
    awaited = sorted({r["waiting_for"] for r in applied if r["waiting_for"] in here} - closed_here)
    if not awaited:
        return []
    return [row["id"] for row in conn.execute(sql.MARK_AWAITED, {"ids": awaited}).fetchall() if row["closed"]]


def _closed_with_waiters(applied) -> list:
    """Closed tickets someone waits for: closed here with waiters, or awaited here and already closed."""
    closed_here = {r["id"] for r in applied if r["closes"]}
    ids = {r["id"] for r in applied if r["closes"] and r["has_waiters"]}
    for row in applied:
        ids.update(row["closed_awaited"])
        if row["waiting_for"] in closed_here:  # waiter and awaited in one batch
            ids.add(row["waiting_for"])
    return sorted(ids)


def wake_closed_waits(conn, closed_ids, actor):
    """Make the tickets that wait for any of `closed_ids` due again. A lost wake is caught by sweeps."""
    if closed_ids:
        conn.execute(sql.WAKE_WAITERS, {"ids": closed_ids, "actor": actor})
