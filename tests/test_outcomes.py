"""The pure rules that turn a handler's outcome into a row change (no database)."""

from pathlib import Path

import pytest

from common.config.models import BotSpec, FleetConfig, State, TicketType
from common.tickets.outcomes import Context, Outcome, PendingTicket, Ticket, outcome_of, plan
from common.tickets.payload import encode_payload
from common.tickets.proceed import proceed_ticket

KIND = TicketType(
    metaservice="ms", name="t",
    states={1: State(1, "a"), 2: State(2, "b"), 3: State(3, "c"), 4: State(4, "ok", final=True),
            5: State(5, "no", final=True)},
    transitions={1: (2,), 2: (3,), 3: (4, 5)}, initial=1,
    lifetime_s=60, notification_frequency_s=10, retention_s=60, group_role="ops",
)


JOB_KIND = TicketType(
    metaservice="ms", name="job", job=True, retries=0,
    states={1: State(1, "a"), 2: State(2, "b"), 3: State(3, "ok", final=True, outcome="succeeded"),
            4: State(4, "no", final=True, outcome="failed")},
    transitions={1: (2,), 2: (3, 4)}, initial=1, lifetime_s=60, notification_frequency_s=10, retention_s=60,
)


@pytest.mark.parametrize("state, outcome", [
    (1, Outcome("error", reason="smtp down")),       # the type's retries: 0, not the bot's 3
    (1, Outcome("fail", reason="no stock")),
    (1, Outcome("send", to_state=3)),                # not in the graph
])
def test_a_job_that_fails_for_good_ends_in_its_failed_state_with_the_error(state, outcome):
    result = plan(ticket(state), JOB_KIND, outcome, retries=3, retry_backoff_s=1)
    assert (result.to_state, result.kind, result.closes, result.waiting_for) == (4, "transitioned", True, None)
    assert result.detail["error"] and not result.children


def ticket(state=1, attempts=0):
    return Ticket(id=7, metaservice="ms", ticket_type="t", state=state, payload={}, attempts=attempts)


@pytest.mark.parametrize("state, outcome, to_state, kind, closes", [
    (1, Outcome("send"), 2, "transitioned", False),                      # normal next
    (3, Outcome("send"), 4, "transitioned", True),                       # into a final state closes
    (3, Outcome("send", to_state=5), 5, "transitioned", True),           # an explicit alternate
    (3, Outcome("send", unavailable=(4,)), 5, "transitioned", True),     # normal unavailable: alternate
    (3, Outcome("send", unavailable=(4, 5)), 3, "escalated", False),     # none available: error ticket
    (1, Outcome("send", to_state=3), 1, "escalated", False),             # not in the graph: refused
    (3, Outcome("send", to_state=5, unavailable=(5,)), 4, "transitioned", True),  # asked for but unavailable
    (3, Outcome("send", to_state=4, unavailable=(4,)), 5, "transitioned", True),  # ... the next available
    (3, Outcome("send", to_state=4, unavailable=(4, 5)), 3, "escalated", False),  # ... or an error ticket
    (2, Outcome("wait", delay_s=30), 2, "waited", False),
    (2, Outcome("fail", reason="no stock"), 2, "escalated", False),
])
def test_plan_decides_the_state(state, outcome, to_state, kind, closes):
    result = plan(ticket(state), KIND, outcome, retries=3, retry_backoff_s=1)
    assert (result.to_state, result.kind, result.closes) == (to_state, kind, closes)


def test_alternate_is_marked_in_the_event_detail():
    result = plan(ticket(3), KIND, Outcome("send", to_state=5), retries=3, retry_backoff_s=1)
    assert result.detail == {"alternate_of": 4}


def test_refused_transition_names_both_states():
    result = plan(ticket(1), KIND, Outcome("send", to_state=3), retries=3, retry_backoff_s=1)
    assert "from state 1 to state 3" in result.detail["reason"]


def test_escalation_raises_one_error_ticket_and_waits_for_it():
    result = plan(ticket(3), KIND, Outcome("fail", reason="boom"), retries=3, retry_backoff_s=1)
    [child] = result.children
    assert (child.metaservice, child.ticket_type, child.group_role) == ("botfleet", "error", "ops")
    assert child.payload["ticket_id"] == 7 and child.payload["reason"] == "boom"
    assert result.waiting_for is child


@pytest.mark.parametrize("attempts, kind, due_in_s", [
    (0, "error", 1.0), (1, "error", 2.0), (2, "error", 4.0), (3, "escalated", 0.0),
])
def test_handler_errors_retry_with_backoff_then_escalate(attempts, kind, due_in_s):
    result = plan(ticket(2, attempts), KIND, Outcome("error", reason="x"), retries=3, retry_backoff_s=1)
    assert (result.kind, result.due_in_s) == (kind, due_in_s)


def test_retry_backoff_is_capped():
    result = plan(ticket(2, 20), KIND, Outcome("error", reason="x"), retries=50, retry_backoff_s=1)
    assert result.due_in_s == 300.0


def test_wait_for_a_child_created_in_the_same_step():
    ctx = Context(ticket(2), KIND, "bot")
    child = ctx.create_ticket("t", {"k": 1})
    result = plan(ticket(2), KIND, ctx.wait_until_ticket(child), retries=1, retry_backoff_s=1, children=ctx.children)
    assert isinstance(result.waiting_for, PendingTicket) and result.children == [child]


@pytest.mark.parametrize("value, expected", [
    (None, Outcome("send")), (3, Outcome("send", to_state=3)), (Outcome("wait", delay_s=1), Outcome("wait", delay_s=1)),
])
def test_handler_return_values(value, expected):
    assert outcome_of(value, Context(ticket(2), KIND, "bot")) == expected


def test_handler_return_value_of_the_wrong_kind_is_an_error():
    with pytest.raises(TypeError, match="handler returned"):
        outcome_of("next please", Context(ticket(2), KIND, "bot"))


def test_payload_changes_are_noticed():
    t = ticket(2)
    ctx = Context(t, KIND, "bot")
    assert not ctx.payload_changed()
    t.payload["note"] = "x"
    assert ctx.payload_changed()


SPEC = BotSpec(name="ms-t-2-b", metaservice="ms", ticket_type="t", state=2, state_name="b", final=False,
               handler="x:y", threads=1, sweep_interval_s=1, lease_s=1, batch_size=1, retries=2,
               retry_backoff_s=1, replicas=1, stop_timeout_s=1)


def config_of(kind, max_payload_bytes=1024 * 1024) -> FleetConfig:
    return FleetConfig(root=Path("config"), database_url=None, heartbeat_interval_s=1.0, watchdog=None,
                       api_listen="127.0.0.1:8080", metaservices={kind.metaservice: {}}, types={kind.key: kind},
                       max_payload_bytes=max_payload_bytes)


def test_handler_that_returns_nonsense_is_a_handler_failure():
    step = proceed_ticket(ticket(2), config_of(KIND), lambda t, ctx: Outcome("teleport"), SPEC)
    assert step.handler_error and step.plan.kind == "error"
    assert "unknown outcome kind 'teleport'" in step.plan.detail["error"]


def _set(key, value):
    def handler(t, ctx):
        t.payload[key] = value
    return handler


@pytest.mark.parametrize("handler, cause", [
    (_set("x", {1, 2}), "Object of type set is not JSON serializable"),
    (_set("x", "a\x00b"), "NUL character"),
    (_set("x", "\ud800"), "not valid Unicode"),
    (_set("x", float("nan")), "Out of range float values are not JSON compliant"),
    (_set("x", "x" * 2000), "more than max_payload_bytes (1000) in fleet.yaml"),
    (lambda t, ctx: ctx.create_ticket("no_such_type") and None, "unknown ticket type ms/no_such_type"),
    (lambda t, ctx: ctx.create_ticket("t", {"x": {1}}) and None, "payload of the new ms/t ticket cannot be stored"),
], ids=["set", "nul", "surrogate", "nan", "too big", "child of no type", "child payload"])
def test_an_outcome_the_database_would_refuse_is_the_steps_failure(handler, cause):
    step = proceed_ticket(ticket(2), config_of(KIND, max_payload_bytes=1000), handler, SPEC)
    assert step.handler_error and step.plan.kind == "error" and step.payload is None and not step.plan.children
    assert cause in step.plan.detail["error"]
    encode_payload(step.plan.detail, 10_000)  # the error event itself can be stored


def test_a_failure_reason_is_stored_without_nul_and_bounded():
    def handler(t, ctx):
        raise ValueError("bad\x00" + "y" * 5000)
    detail = proceed_ticket(ticket(2), config_of(KIND), handler, SPEC).plan.detail
    assert "\x00" not in detail["error"] and len(detail["error"]) <= 2010
    encode_payload(detail, 10_000)


@pytest.mark.parametrize("on_timeout, state, to_state, kind, closes, waits_for_error", [
    ({3: 5}, 3, 5, "timeout", True, False),   # the state's on_timeout next state
    ({1: 2}, 1, 2, "timeout", False, False),  # which need not be final
    ({3: 5}, 1, 1, "escalated", False, True),  # none for this state: keep it, one error ticket
])
def test_a_lifetime_timeout_takes_the_states_on_timeout_state_else_raises_one_error_ticket(
        on_timeout, state, to_state, kind, closes, waits_for_error):
    from dataclasses import replace

    from common.tickets.outcomes import timeout_plan

    result = timeout_plan(ticket(state), replace(KIND, on_timeout=on_timeout))
    assert (result.to_state, result.kind, result.closes, result.times_out) == (to_state, kind, closes, True)
    assert (result.waiting_for is not None) == waits_for_error


@pytest.mark.parametrize("outcome, kind, detail, told", [
    (Outcome("send"), "timeout", {"lifetime_s": 60}, "it is now b"),  # a move: recorded as the default's
    (Outcome("send", to_state=5, unavailable=(4,)), "timeout", {"alternate_of": 4, "lifetime_s": 60}, "it is now no"),
    (Outcome("wait", delay_s=5), "waited", {"seconds": 5}, "it stays a"),
])
def test_a_types_own_timeout_handlers_outcome_is_recorded_as_the_timeout_and_told_to_the_creator(
        outcome, kind, detail, told):
    from common.tickets.outcomes import as_timeout, timeout_text

    state = 3 if outcome.to_state == 5 else 1
    result = as_timeout(ticket(state), KIND, plan(ticket(state), KIND, outcome, retries=0, retry_backoff_s=0))
    assert (result.kind, result.detail, result.times_out) == (kind, detail, True)
    assert timeout_text(ticket(state), KIND, result).endswith(f"is out of service: {told}")
