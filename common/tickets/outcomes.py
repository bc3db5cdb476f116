"""What a handler can decide, and the pure rules that turn a decision into the row changes to write.

A handler is `def handle(ticket, ctx)`. It returns one of ctx's outcomes (or None for the normal
next state); side effects it asks for (child tickets, a new assignee, payload changes) are written
in the same transaction as the outcome, so a retried step never applies them twice.
"""

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE
from common.tickets.payload import storable_text

MAX_RETRY_BACKOFF_S = 300.0
# Long: acceptance, not this timer, ends a wait for acceptance (and the lifetime's timeout, if it comes first).
WAIT_FOR_ACCEPTANCE_S = 3600.0


@dataclass
class Ticket:
    id: int
    metaservice: str
    ticket_type: str
    state: int
    payload: dict
    creator: str | None = None
    group_role: str | None = None
    assigned_user: str | None = None
    parent_id: int | None = None
    created_at: datetime | None = None
    state_entered_at: datetime | None = None
    deadline_at: datetime | None = None
    waiting_for: int | None = None
    lease_owner: str | None = None
    attempts: int = 0
    step: int = 0
    closed_at: datetime | None = None
    start_after: datetime | None = None  # read by the API and the CLI; bots claim only due tickets anyway
    callback_url: str | None = None
    # The one clock's time when the ticket was read (claimed), and this process's monotonic clock then:
    # together they tell the database's time later without asking it, or the host's clock.
    read_at: datetime | None = None
    read_at_mono: float = field(default_factory=time.monotonic, compare=False, repr=False)

    @classmethod
    def from_row(cls, row) -> "Ticket":
        return cls(**{name: row[name] for name in cls.__dataclass_fields__ if name in row})

    def clock_now(self) -> datetime:
        """The one clock's time now, from the time it was read."""
        if self.read_at is None:
            raise RuntimeError(f"ticket {self.id} was not read with the database's time (read_at)")
        return self.read_at + timedelta(seconds=time.monotonic() - self.read_at_mono)


@dataclass
class PendingTicket:
    """A child ticket asked for by a handler. A bot's handler gets its id when it asks (the tickets' id
    sequence); it is created with that id only if the step's outcome is written. An error ticket the runtime
    raises gets its id when it is written: the ticket's open error ticket may take it instead."""

    metaservice: str
    ticket_type: str
    payload: dict
    group_role: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str  # send | wait | wait_ticket | fail | error
    to_state: int | None = None
    unavailable: tuple = ()
    delay_s: float = 0.0
    until: datetime | None = None  # wait_until_time: a time of the one clock
    ticket: object = None
    reason: str | None = None


class Context:
    """Handed to a handler with its ticket: the seed's bot functions, bound to this ticket."""

    def __init__(self, ticket: Ticket, ticket_type, bot_name: str, new_id=None):
        self.ticket = ticket
        self._new_id = new_id  # () -> a fresh ticket id; None: children get theirs when written
        self.ticket_type = ticket_type
        self.bot_name = bot_name
        self.children: list[PendingTicket] = []
        self.assignee: tuple | None = None  # (user or None, "assigned" | "accepted")
        self.notifications: list[tuple] = []  # (user, text, kind), written with the outcome
        self.bot_messages: list[tuple] = []  # (bot, text, kind), written with the outcome
        self._payload_before = copy.deepcopy(ticket.payload)

    # -- outcomes ------------------------------------------------------------------------------
    def send_ticket(self, to: int | None = None, unavailable=()) -> Outcome:
        """The normal next state, or `to`. States in `unavailable` are skipped for the alternates."""
        return Outcome("send", to_state=to, unavailable=tuple(unavailable))

    def wait(self, seconds: float) -> Outcome:
        return Outcome("wait", delay_s=max(0.0, float(seconds)))

    def wait_until_time(self, when: datetime) -> Outcome:
        """Come back at `when`, by the database's clock (the one every bot reads; see now())."""
        if when.tzinfo is None:
            raise ValueError("wait_until_time needs a timezone-aware datetime")
        return Outcome("wait", until=when)

    def now(self) -> datetime:
        """The time by the fleet's one clock, the database's: what handlers compare times with."""
        return self.ticket.clock_now()

    def wait_for_acceptance(self) -> Outcome | None:
        """While nobody has accepted the ticket, a wait that acceptance cuts short (it makes the ticket due
        at once); None once someone has. `return ctx.wait_for_acceptance() or ctx.send_ticket()`."""
        return self.wait(WAIT_FOR_ACCEPTANCE_S) if self.get_assigned_user() is None else None

    def wait_until_ticket(self, other) -> Outcome:
        """Come back to this ticket once `other` (an id or a ticket made by create_ticket) is closed."""
        return Outcome("wait_ticket", ticket=other)

    def fail(self, reason: str) -> Outcome:
        """Give up at once: the ticket keeps its state and an error ticket goes to its group (a job fails)."""
        return Outcome("fail", reason=storable_text(reason))

    # -- side effects written with the outcome ------------------------------------------------
    def create_ticket(self, ticket_type: str, payload=None, metaservice=None, group_role=None) -> PendingTicket:
        """A child ticket, created with this step's outcome. Its id is known at once (a handler may store it in
        the payload); a retried step plans a new child, and the ids of plans never written stay unused."""
        child = PendingTicket(metaservice or self.ticket.metaservice, ticket_type, dict(payload or {}), group_role,
                              id=self._new_id() if self._new_id is not None else None)
        self.children.append(child)
        return child

    def get_assigned_user(self):
        return self.assignee[0] if self.assignee else self.ticket.assigned_user

    def set_assigned_user(self, user: str | None):
        """Assign the ticket (None: unassign). The user must be a member of the ticket's group; if not,
        the step fails, as when a handler raises."""
        self.assignee = (_user(user), "assigned")

    def accept(self, user: str):
        """Accept the ticket on behalf of a member of its group: the member becomes its assignee."""
        if user is None:
            raise ValueError("accept needs the member who accepts")
        self.assignee = (_user(user), "accepted")

    def send_user_notification(self, user: str, text: str):
        """Notify a user about this ticket (inbox, and email if they have an address). Written with the
        outcome: none if the step is not written, never lost if it is."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a notification needs a text")
        self.notifications.append((_user(user), text, "message"))

    def send_bot_notification(self, bot: str, text: str, kind: str = "message"):
        """Send another bot a message about this ticket, written with the outcome; the receiving bot hands it
        to its handler module's on_<kind> function."""
        self.bot_messages.append((bot, text, kind))

    def payload_changed(self) -> bool:
        return self.ticket.payload != self._payload_before


def _user(user):
    if user is not None and (not isinstance(user, str) or not user.strip()):
        raise ValueError(f"a user must be a non-empty name or None, got {user!r}")
    return user


@dataclass
class Plan:
    """The row change one outcome makes: fed to the batched apply statement."""

    to_state: int
    kind: str
    detail: dict | None = None
    closes: bool = False
    due_in_s: float = 0.0
    due_at: datetime | None = None  # instead of due_in_s: a time of the one clock
    waiting_for: object = None  # an id or a PendingTicket
    attempts: int = 0
    times_out: bool = False  # this step handles the ticket's lifetime timeout (once)
    children: list = field(default_factory=list)


def error_ticket(ticket: Ticket, ticket_type, reason: str) -> PendingTicket:
    return PendingTicket(ERROR_METASERVICE, ERROR_TYPE, {
        "ticket_id": ticket.id, "metaservice": ticket.metaservice, "ticket_type": ticket.ticket_type,
        "state": ticket.state, "reason": reason,
    }, group_role=ticket_type.group_role)


def escalate(ticket: Ticket, ticket_type, reason: str, children=()) -> Plan:
    """Keep the state, raise one error ticket and wait for it: the bot does not retry until it is resolved."""
    child = error_ticket(ticket, ticket_type, reason)
    return Plan(to_state=ticket.state, kind="escalated", detail={"reason": reason}, waiting_for=child,
                attempts=0, children=[*children, child])


def give_up(ticket: Ticket, ticket_type, reason: str, children=()) -> Plan:
    """A step that failed for good. A job ends in its type's failed state, the reason in its log, and
    whatever waits for it is woken (seed 000: the generator does not retry; the submitter decides); any
    other ticket keeps its state and raises one error ticket (escalate)."""
    target = ticket_type.failure_state
    if target is None:
        return escalate(ticket, ticket_type, reason, children)
    return Plan(to_state=target, kind="transitioned", detail={"error": reason}, closes=True, children=list(children))


def timeout_plan(ticket: Ticket, ticket_type) -> Plan:
    """ticket_timeout: the ticket outlived its type's lifetime. It takes the state's `on_timeout` next state
    if the type names one, else keeps its state and one error ticket is raised. Pure."""
    target = ticket_type.on_timeout.get(ticket.state)
    lifetime = f"{_lifetime_s(ticket, ticket_type):g}s"
    if target is None and ticket_type.failure_state is not None:
        why = (f"it ran longer than its max_runtime ({lifetime})" if ticket_type.max_runtime_s is not None
               and _lifetime_s(ticket, ticket_type) >= ticket_type.max_runtime_s
               else f"its lifetime of {lifetime} ran out")
        result = Plan(to_state=ticket_type.failure_state, kind="timeout", closes=True,
                      detail={"lifetime_s": _lifetime_s(ticket, ticket_type), "error": f"{why} in state {ticket.state}"})
    elif target is None:
        result = escalate(ticket, ticket_type, f"its lifetime of {lifetime} ran out in state {ticket.state}")
    else:
        result = Plan(to_state=target, kind="timeout", detail={"lifetime_s": _lifetime_s(ticket, ticket_type)},
                      closes=ticket_type.states[target].final)
    result.times_out = True
    return result


def as_timeout(ticket: Ticket, ticket_type, plan_: Plan) -> Plan:
    """A type's own ticket_timeout's plan, as the timeout it handles: a move is recorded as the default's
    is (a 'timeout' event with the lifetime). Pure."""
    plan_.times_out = True
    if plan_.kind == "transitioned":
        plan_.kind = "timeout"
        plan_.detail = {**(plan_.detail or {}), "lifetime_s": _lifetime_s(ticket, ticket_type)}
    return plan_


def timeout_text(ticket: Ticket, ticket_type, plan_: Plan) -> str:
    """The one out-of-service message a timed-out ticket's creator gets."""
    stays = f"it stays {ticket_type.states[ticket.state].name}"
    what = (f"it is now {ticket_type.states[plan_.to_state].name}" if plan_.kind == "timeout"
            else f"{stays} and the group has been asked to resolve it" if plan_.kind == "escalated" else stays)
    return (f"Ticket {ticket.id} ({ticket.metaservice}/{ticket.ticket_type}) was not dealt with within its "
            f"lifetime of {_lifetime_s(ticket, ticket_type):g}s and is out of service: {what}")


def _lifetime_s(ticket: Ticket, ticket_type) -> float:
    """The lifetime the ticket had: its deadline's distance from its creation (an override may differ from YAML)."""
    if ticket.deadline_at and ticket.created_at:
        return round((ticket.deadline_at - ticket.created_at).total_seconds(), 3)
    return ticket_type.lifetime_s


def choose_state(ticket_type, from_state: int, outcome: Outcome):
    """The state a send outcome takes, or (None, reason) when none can be taken."""
    allowed = ticket_type.next_states(from_state)
    if outcome.to_state is not None:
        if outcome.to_state not in allowed:
            return None, (f"transition from state {from_state} to state {outcome.to_state} is not allowed "
                          f"by the graph of {ticket_type.metaservice}/{ticket_type.name}")
        if outcome.to_state not in outcome.unavailable:
            return outcome.to_state, None
        # Asked for, but unavailable: what is unavailable is never taken; the seed's order decides.
    candidates = [code for code in allowed if code not in outcome.unavailable and code in ticket_type.states]
    if not candidates:
        tried = ", ".join(str(code) for code in allowed) or "none"
        return None, f"no next state of state {from_state} can be taken (tried {tried})"
    return candidates[0], None


def plan(ticket: Ticket, ticket_type, outcome: Outcome, *, retries: int, retry_backoff_s: float,
         children=()) -> Plan:
    """Decide the row change for one handler outcome. Pure: table-tested in tests/test_outcomes.py."""
    children = list(children)
    if outcome.kind == "send":
        target, problem = choose_state(ticket_type, ticket.state, outcome)
        if target is None:
            return give_up(ticket, ticket_type, problem, children)
        normal = ticket_type.next_states(ticket.state)[0]
        detail = {"alternate_of": normal} if target != normal else None
        return Plan(to_state=target, kind="transitioned", detail=detail,
                    closes=ticket_type.states[target].final, children=children)
    if outcome.kind == "wait" and outcome.until is not None:
        return Plan(to_state=ticket.state, kind="waited", detail={"until": outcome.until.isoformat()},
                    due_at=outcome.until, attempts=ticket.attempts, children=children)
    if outcome.kind == "wait":
        return Plan(to_state=ticket.state, kind="waited", detail={"seconds": round(outcome.delay_s, 3)},
                    due_in_s=outcome.delay_s, attempts=ticket.attempts, children=children)
    if outcome.kind == "wait_ticket":
        other = outcome.ticket
        detail = {"ticket": other if isinstance(other, int) else None}
        return Plan(to_state=ticket.state, kind="waited", detail=detail, waiting_for=other,
                    attempts=ticket.attempts, children=children)
    if outcome.kind == "fail":
        return give_up(ticket, ticket_type, outcome.reason, children)
    if outcome.kind == "error":
        retries = retries if ticket_type.retries is None else ticket_type.retries
        attempts = ticket.attempts + 1
        if attempts <= retries:
            backoff_s = min(MAX_RETRY_BACKOFF_S, retry_backoff_s * 2 ** (attempts - 1))
            return Plan(to_state=ticket.state, kind="error",
                        detail={"error": outcome.reason, "attempt": attempts, "retry_in_s": backoff_s},
                        due_in_s=backoff_s, attempts=attempts)
        return give_up(ticket, ticket_type, f"handler failed {attempts} times; last error: {outcome.reason}")
    raise ValueError(f"unknown outcome kind {outcome.kind!r}")


def outcome_of(result, ctx: Context) -> Outcome:
    """A handler's return value as an Outcome; None means the normal next state."""
    if result is None:
        return ctx.send_ticket()
    if isinstance(result, Outcome):
        return result
    if isinstance(result, int) and not isinstance(result, bool):
        return ctx.send_ticket(to=result)
    raise TypeError(f"handler returned {result!r}; return ctx.send_ticket(), ctx.wait(...), ctx.fail(...) or None")
