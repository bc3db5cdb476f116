"""Finding tickets for people (the console's list and its bulk actions): filters, a page by keyset, and a
count that stays cheap on a table of millions (exact when it is, the planner's estimate otherwise)."""

import json
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

import psycopg

from common.store import sql
from common.tickets.outcomes import Ticket

# A payload search (JSON containment, text) has no index to use: each page reads at most this many ids,
# newest first, and says so; the next page searches the ids below.
SEARCH_WINDOW = 20_000
# Counts up to this are exact; past it the planner's estimate is shown, marked as one.
EXACT_COUNT_CAP = 10_000
# An exact count is tried only when the planner expects at most this many rows...
TRY_EXACT_BELOW = 100_000
# ...and gets this long before the estimate is shown instead.
COUNT_BUDGET_MS = 30
STATUSES = ("open", "closed", "all")


@dataclass(frozen=True)
class TicketFilter:
    """What the list shows: the fields given narrow it, None is no condition."""

    metaservice: str | None = None
    ticket_type: str | None = None
    state: int | None = None
    status: str = "all"  # open | closed | all
    group: str | None = None
    assignee: str | None = None
    creator: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None  # excluded: created before it
    q: str | None = None  # text in the payload
    contains: dict | None = field(default=None, hash=False)  # the payload contains this JSON

    @property
    def searches_payload(self) -> bool:
        return self.q is not None or self.contains is not None

    def conditions(self) -> list[str]:
        """The names of sql.CONSOLE_TICKET_CONDITIONS this filter needs."""
        names = [f.name for f in fields(self) if f.name not in ("status",) and getattr(self, f.name) is not None]
        if self.status in ("open", "closed"):
            names.append(self.status)
        return names

    def params(self) -> dict:
        return {"metaservice": self.metaservice, "ticket_type": self.ticket_type, "state": self.state,
                "group": self.group, "assignee": self.assignee, "creator": self.creator,
                "created_from": self.created_from, "created_to": self.created_to,
                "contains": None if self.contains is None else json.dumps(self.contains),
                "q_pattern": None if self.q is None else like_pattern(self.q)}

    def open_only(self) -> "TicketFilter":
        """The open tickets among these: what a bulk action can change."""
        return replace(self, status="open")


def like_pattern(text: str) -> str:
    """An ILIKE pattern finding `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class Page:
    tickets: list
    next_before: int | None  # the cursor of the next page; None on the last
    searched_from: int | None = None  # a payload search read the ids from here up (None: no window)
    searched_to: int | None = None
    # Every match is on this page (the first page, not full, no window left below): its length is the count.
    complete: bool = False
    limit: int = 0


def ticket_page(conn, ticket_filter: TicketFilter, *, before: int | None = None, limit: int = 50,
                window: int = SEARCH_WINDOW) -> Page:
    """A page of matching tickets, newest first, below the id `before`. A payload search reads a window of
    `window` ids below it; a page with fewer matches than `limit` then goes on below the window."""
    names, params = ticket_filter.conditions(), {**ticket_filter.params(), "limit": limit + 1}
    if before is not None:
        names.append("before")
        params["before"] = before
    searched_from = searched_to = None
    if ticket_filter.searches_payload:
        searched_to = before - 1 if before is not None else conn.execute(sql.CONSOLE_MAX_TICKET_ID).fetchone()["max_id"]
        searched_from = max(searched_to - window + 1, 1)
        names.append("window_from")
        params["window_from"] = searched_from
    rows = conn.execute(sql.console_ticket_page(names), params).fetchall()
    tickets = [Ticket.from_row(row) for row in rows[:limit]]
    if len(rows) > limit:
        next_before = tickets[-1].id
    elif searched_from is not None and searched_from > 1:
        next_before = searched_from
    else:
        next_before = None
    complete = before is None and len(rows) <= limit and next_before is None
    return Page(tickets, next_before, searched_from, searched_to, complete, limit)


@dataclass(frozen=True)
class Count:
    n: int
    exact: bool
    over_cap: bool = False  # exact counting stopped at EXACT_COUNT_CAP: n is the estimate


def count_of_page(conn, ticket_filter: TicketFilter, page: Page, **limits) -> Count:
    """How many match the page's filter: the page's own length when it holds them all, else count_tickets
    (within the page's search window: the matches among the ids it searched)."""
    if page.complete or (page.searched_from is not None and len(page.tickets) < page.limit):
        return Count(len(page.tickets), exact=True)
    return count_tickets(conn, ticket_filter, searched_from=page.searched_from, **limits)


def count_tickets(conn, ticket_filter: TicketFilter, *, searched_from: int | None = None,
                  cap: int = EXACT_COUNT_CAP, try_below: int = TRY_EXACT_BELOW,
                  budget_ms: int = COUNT_BUDGET_MS) -> Count:
    """How many tickets match (within a payload search's window, when given): counted when that is cheap,
    else the planner's estimate. Needs a connection outside a transaction (its own, autocommit)."""
    names, params = ticket_filter.conditions(), ticket_filter.params()
    if searched_from is not None:
        names.append("window_from")
        params["window_from"] = searched_from
    estimate = estimated_rows(conn, names, params)
    if estimate > try_below:
        return Count(estimate, exact=False)
    try:
        with conn.transaction():
            conn.execute(sql.CONSOLE_COUNT_BUDGET, {"budget": f"{budget_ms}ms"})
            counted = conn.execute(sql.console_ticket_count(names), {**params, "cap": cap + 1}).fetchone()["n"]
    except psycopg.errors.QueryCanceled:  # past the budget: the estimate will do
        return Count(estimate, exact=False)
    if counted > cap:
        return Count(max(estimate, counted), exact=False, over_cap=True)
    return Count(counted, exact=True)


def estimated_rows(conn, names, params) -> int:
    plan = conn.execute(sql.console_ticket_estimate(names), params).fetchone()
    [top] = next(iter(plan.values()))
    return int(top["Plan"]["Plan Rows"])
