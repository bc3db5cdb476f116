"""Ticket operations against a real PostgreSQL: creating, claiming, writing outcomes, escalating, waking."""


import dataclasses
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from common.errors import BotfleetError, TransitionNotAllowed
from common.people import directory
from common.store import clock, sql
from common.store.connect import connect
from common.store.revision import check_schema
from common.store.sync import sync_config
from common.tickets.claim import get_current_ticket_list
from common.tickets.create import create_ticket, create_tickets
from common.tickets.error_tickets import raise_error_ticket
from common.tickets.manual import send_ticket, set_assigned_user
from common.tickets.outcomes import Context, Outcome, error_ticket, plan
from common.tickets.proceed import Step
from common.tickets.read import get_assigned_user, get_events, get_ticket
from common.tickets.record import add_ticket_to_proceeded_list
from common.tickets.timers import report_stuck
from tests.conftest import stays_true, wait_until

OWNER_A, OWNER_B = "bot-a@test:1", "bot-b@test:2"


@pytest.fixture
def types(synced):
    return synced


@pytest.fixture
def spec(synced):
    return synced.bots["testms-pipe-1-first"]


@pytest.fixture
def listener(db_url):
    with connect(db_url, autocommit=True) as conn:
        yield conn


def notified(conn, channel, timeout_s=10.0):
    return [n.channel for n in conn.notifies(timeout=timeout_s, stop_after=1) if n.channel == channel]


def events(conn, ticket_id):
    return [(e["kind"], e["from_state"], e["to_state"]) for e in get_events(conn, ticket_id)]


def step_for(conn, types, ticket, outcome, owner=OWNER_A):
    kind = types.ticket_type(ticket.metaservice, ticket.ticket_type)
    return Step(ticket, plan(ticket, kind, outcome, retries=1, retry_backoff_s=0.1))


def test_create_writes_ticket_event_and_notify(conn, types, listener):
    listener.execute(f'LISTEN "{sql.channel("testms", "pipe", 1)}"')
    ticket_id = create_ticket(conn, types, "testms", "pipe", {"k": "v"}, creator="alice")
    ticket = get_ticket(conn, ticket_id)
    assert (ticket.state, ticket.payload, ticket.creator, ticket.group_role) == (1, {"k": "v"}, "alice", "testers")
    assert ticket.deadline_at is not None
    assert events(conn, ticket_id) == [("created", None, 1)]
    assert notified(listener, "bf.testms.pipe.1")


def test_unknown_type_is_refused(conn, types):
    with pytest.raises(BotfleetError, match="unknown ticket type testms/nope"):
        create_ticket(conn, types, "testms", "nope")


@pytest.mark.parametrize("payloads, message", [
    ([{"x": "x" * 1_100_000}], "payload is 1100009 bytes, more than max_payload_bytes (1048576) in fleet.yaml"),
    ([{}, {"x": "a\x00"}], "payload 1 cannot be stored: a string holds a NUL character"),
    ([{"x": {1}}], "payload cannot be stored as JSON: Object of type set is not JSON serializable"),
])
def test_a_payload_that_cannot_be_stored_is_refused_and_nothing_is_created(conn, types, payloads, message):
    with pytest.raises(BotfleetError) as refused:
        create_tickets(conn, types, "testms", "pipe", payloads)
    assert message in str(refused.value)
    assert conn.execute("SELECT count(*) AS n FROM tickets").fetchone()["n"] == 0


def test_claimed_ticket_is_in_one_owners_hands_until_its_lease_runs_out(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [claimed] = get_current_ticket_list(conn, spec, OWNER_A, 10)
    assert claimed.id == ticket_id
    assert get_current_ticket_list(conn, spec, OWNER_B, 10) == []
    conn.execute("UPDATE tickets SET due_at = now() - interval '1 second', lease_expires_at = now()")
    [rescued] = get_current_ticket_list(conn, spec, OWNER_B, 10)
    assert rescued.id == ticket_id and rescued.lease_owner == OWNER_B
    assert ("claimed", 1, 1) in events(conn, ticket_id)


def test_transition_commits_row_event_and_notify_together(conn, types, spec, listener):
    listener.execute(f'LISTEN "{sql.channel("testms", "pipe", 2)}"')
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    written = add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, ticket, Outcome("send"))],
                                                  OWNER_A, "testms-pipe-1-first")
    assert [row["id"] for row in written.applied] == [ticket_id]
    after = get_ticket(conn, ticket_id)
    assert (after.state, after.lease_owner, after.step) == (2, None, 1)
    assert events(conn, ticket_id) == [("created", None, 1), ("transitioned", 1, 2)]
    assert notified(listener, "bf.testms.pipe.2")


def test_a_ticket_entering_a_final_state_wakes_that_states_bot_and_one_clock_stamps_it(conn, types, spec, listener):
    listener.execute(f'LISTEN "{sql.channel("testms", "pipe", 4)}"')
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    conn.execute("UPDATE tickets SET state = 3 WHERE id = %s", (ticket_id,))
    [ticket] = get_current_ticket_list(conn, dataclasses.replace(spec, state=3), OWNER_A, 1)
    add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, ticket, Outcome("send"))], OWNER_A, "bot")
    assert notified(listener, "bf.testms.pipe.4")
    stamps = conn.execute("""
        SELECT t.created_at, t.state_entered_at, t.closed_at,
               (SELECT at FROM ticket_events WHERE ticket_id = t.id AND kind = 'created') AS created,
               (SELECT at FROM ticket_events WHERE ticket_id = t.id AND kind = 'transitioned') AS entered,
               (SELECT at FROM ticket_events WHERE ticket_id = t.id AND kind = 'closed') AS closed
        FROM tickets t WHERE id = %s""", (ticket_id,)).fetchone()
    assert stamps["created_at"] == stamps["created"]
    assert stamps["state_entered_at"] == stamps["entered"] == stamps["closed_at"] == stamps["closed"]


def test_rolled_back_transition_changes_nothing_and_wakes_nobody(db_url, conn, types, spec, listener):
    listener.execute(f'LISTEN "{sql.channel("testms", "pipe", 2)}"')
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    with connect(db_url) as other:
        with pytest.raises(RuntimeError):
            with other.transaction():
                add_ticket_to_proceeded_list(other, types, [step_for(other, types, ticket, Outcome("send"))],
                                                    OWNER_A, "bot")
                raise RuntimeError("crash before commit")
    assert get_ticket(conn, ticket_id).state == 1
    assert not notified(listener, "bf.testms.pipe.2", timeout_s=0.3)


def test_a_step_written_twice_is_written_once(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    step = step_for(conn, types, ticket, Outcome("send"))
    first = add_ticket_to_proceeded_list(conn, types, [step], OWNER_A, "bot")
    second = add_ticket_to_proceeded_list(conn, types, [step], OWNER_A, "bot")
    assert (len(first.applied), len(second.applied), len(second.stale)) == (1, 0, 1)
    assert [e for e in events(conn, ticket_id) if e[0] == "transitioned"] == [("transitioned", 1, 2)]


def test_outcome_of_a_process_that_lost_its_lease_is_dropped(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    conn.execute("UPDATE tickets SET due_at = now(), lease_expires_at = now()")
    [rescued] = get_current_ticket_list(conn, spec, OWNER_B, 1)
    late = add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, ticket, Outcome("send"))],
                                               OWNER_A, "a")
    assert late.applied == []
    add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, rescued, Outcome("send"))], OWNER_B, "b")
    assert [e for e in events(conn, ticket_id) if e[0] == "transitioned"] == [("transitioned", 1, 2)]


def test_stuck_ticket_raises_exactly_one_error_ticket_and_resumes_when_it_is_resolved(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    stuck = Outcome("send", unavailable=(2,))
    add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, ticket, stuck)], OWNER_A, "bot")
    parked = get_ticket(conn, ticket_id)
    errors = conn.execute("SELECT id, group_role, payload FROM tickets WHERE metaservice = 'botfleet'").fetchall()
    assert len(errors) == 1 and errors[0]["payload"]["ticket_id"] == ticket_id
    assert errors[0]["group_role"] == "testers"
    assert (parked.state, parked.waiting_for) == (1, errors[0]["id"])
    # Sweeps do not see it again, so no second error ticket ever comes of it.
    assert get_current_ticket_list(conn, spec, OWNER_A, 10) == []
    send_ticket(conn, types, errors[0]["id"], actor="operator")
    resumed = get_ticket(conn, ticket_id)
    assert resumed.waiting_for is None and resumed.state == 1
    assert events(conn, ticket_id)[-1] == ("woke", 1, 1)
    assert [t.id for t in get_current_ticket_list(conn, spec, OWNER_A, 10)] == [ticket_id]


def test_wait_for_a_ticket_that_is_already_closed_ends_at_once(conn, types, spec):
    other = create_ticket(conn, types, "testms", "pipe")
    conn.execute("UPDATE tickets SET state = 4, closed_at = now() WHERE id = %s", (other,))
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = [t for t in get_current_ticket_list(conn, spec, OWNER_A, 10) if t.id == ticket_id]
    add_ticket_to_proceeded_list(conn, types, [step_for(conn, types, ticket, Outcome("wait_ticket", ticket=other))],
                                        OWNER_A, "bot")
    assert get_ticket(conn, ticket_id).waiting_for is None
    assert [e[0] for e in events(conn, ticket_id)][-2:] == ["waited", "woke"]


def test_a_wait_written_in_the_same_batch_as_its_awaited_ticket_is_woken_by_the_later_close(conn, types, spec):
    awaited, waiter = create_tickets(conn, types, "testms", "pipe", [{}, {}])
    claimed = {t.id: t for t in get_current_ticket_list(conn, spec, OWNER_A, 10)}
    # One batch: the waiter starts waiting, and the ticket it waits for moves on (not closing).
    add_ticket_to_proceeded_list(conn, types, [
        step_for(conn, types, claimed[waiter], Outcome("wait_ticket", ticket=awaited)),
        step_for(conn, types, claimed[awaited], Outcome("send"))], OWNER_A, "bot")
    assert (get_ticket(conn, awaited).state, get_ticket(conn, waiter).waiting_for) == (2, awaited)
    assert conn.execute("SELECT has_waiters FROM tickets WHERE id = %s", (awaited,)).fetchone()["has_waiters"]
    # Its close, later and by hand, wakes the waiter at once: no sweep needed.
    send_ticket(conn, types, awaited, actor="alice")
    send_ticket(conn, types, awaited, to=4, actor="alice")
    assert get_ticket(conn, waiter).waiting_for is None
    assert [e[0] for e in events(conn, waiter)][-2:] == ["waited", "woke"]


def test_the_waited_event_names_a_child_created_in_the_same_step(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    ctx = Context(ticket, types.ticket_type("testms", "pipe"), "bot")
    child = ctx.create_ticket("pipe")
    step = Step(ticket, plan(ticket, types.ticket_type("testms", "pipe"), ctx.wait_until_ticket(child), retries=1,
                             retry_backoff_s=0.1, children=ctx.children))
    add_ticket_to_proceeded_list(conn, types, [step], OWNER_A, "bot")
    waited = [e for e in get_events(conn, ticket_id) if e["kind"] == "waited"]
    assert child.id is not None and waited[0]["detail"] == {"ticket": child.id}


def test_manual_moves_follow_the_graph(conn, types):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    with pytest.raises(TransitionNotAllowed, match="from state 1 to state 3"):
        send_ticket(conn, types, ticket_id, 3)
    assert send_ticket(conn, types, ticket_id).state == 2


def test_manual_move_of_a_ticket_in_a_bots_hands_is_refused_once_the_wait_for_it_runs_out(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    get_current_ticket_list(conn, spec, OWNER_A, 1)
    with pytest.raises(BotfleetError, match=r"being processed by bot-a@test:1 \(waited 0.3s\)"):
        send_ticket(conn, types, ticket_id, wait_s=0.3)
    assert get_ticket(conn, ticket_id).state == 1


def test_manual_move_waits_for_the_bot_to_hand_the_ticket_back(conn, types, spec, db_url):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    get_current_ticket_list(conn, spec, OWNER_A, 1)
    move = ThreadPoolExecutor(1).submit(send_ticket_on_own_connection, db_url, types, ticket_id)
    wait_until(lambda: move.running(), 5, "the move to start")
    stays_true(lambda: not move.done(), 0.5, "the move waits while the ticket is leased")
    conn.execute(sql.RELEASE_LEASES, {"owner": OWNER_A, "held": [ticket_id], "metaservice": "testms",
                                      "ticket_type": "pipe", "state": 1})
    assert move.result(timeout=10).state == 2


def send_ticket_on_own_connection(db_url, types, ticket_id):
    with connect(db_url) as other:
        return send_ticket(other, types, ticket_id)


def test_assignment_is_recorded(conn, types):
    directory.add_user(conn, "bob")
    directory.add_group(conn, "testers", ["bob"])
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    assert set_assigned_user(conn, types, ticket_id, "bob").assigned_user == "bob"
    assert get_assigned_user(conn, ticket_id) == "bob"
    assert events(conn, ticket_id)[-1] == ("assigned", 1, 1)


def test_status_codes_are_synced_for_sql_readers(conn, synced):
    rows = conn.execute("SELECT code, name, final, normal_next, alternates FROM status_codes "
                        "WHERE metaservice = 'testms' ORDER BY code").fetchall()
    assert [(r["code"], r["name"], r["normal_next"], r["alternates"]) for r in rows][2] == (3, "third", 4, [5])
    # botfleet's own types: two states each for the error ticket, the mail bot, the API, the webhook bot and
    # the status model expiry bot, three for the JOBSWEEPER's runs.
    assert conn.execute("SELECT count(*) AS n FROM status_codes WHERE metaservice = 'botfleet'").fetchone()["n"] == 13


def test_schema_check_names_the_command_to_run(empty_db_url):
    from common.errors import SchemaBehindError

    with connect(empty_db_url) as conn:
        with pytest.raises(SchemaBehindError, match="run `botfleet db upgrade`"):
            check_schema(conn)


def test_a_schema_ahead_is_accepted_while_compatible_and_one_behind_is_refused(conn):
    from common.errors import SchemaBehindError
    from common.store.migrations import SCHEMA_HEAD

    assert check_schema(conn) == SCHEMA_HEAD
    # A newer botfleet expanded the schema; this code still runs against it.
    conn.execute("UPDATE alembic_version SET version_num = '9998'")
    assert check_schema(conn) == "9998"
    # A later contraction needs newer code than this.
    conn.execute("UPDATE botfleet_schema SET compatible_since = '9998'")
    with pytest.raises(SchemaBehindError, match=f"ahead of this botfleet \\(revision {SCHEMA_HEAD}\\), and needs "
                                                "botfleet of revision 9998 or newer: upgrade botfleet"):
        check_schema(conn)
    conn.execute("UPDATE alembic_version SET version_num = '0002'")
    with pytest.raises(SchemaBehindError, match="at revision 0002; .* run `botfleet db upgrade`"):
        check_schema(conn)


def test_claim_plan_uses_the_index_even_when_cached_on_an_empty_table(db_url, types, spec):
    """A generic plan made while the table is empty must not scan the table once it is large."""
    with connect(db_url, autocommit=True) as conn:
        conn.execute(sql.BOT_SESSION_SETUP)
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE claim(text, text, int, int, text, float8, bool, bigint[]) AS " + sql.CLAIM.replace(
            "%(metaservice)s", "$1").replace("%(ticket_type)s", "$2").replace("%(state)s", "$3").replace(
            "%(limit)s", "$4").replace("%(owner)s", "$5").replace("%(lease_s)s", "$6").replace(
            "%(runs_when_locked)s", "$7").replace("%(in_hand)s", "$8"))
        conn.execute("INSERT INTO tickets (metaservice, ticket_type, state, closed_at) "
                     "SELECT 'testms', 'pipe', 4, now() FROM generate_series(1, 20000)")
        conn.execute("ANALYZE tickets")
        plan_text = "\n".join(r["QUERY PLAN"] for r in conn.execute(
            "EXPLAIN EXECUTE claim('testms', 'pipe', 1, 10, 'x', 30, false, '{}')").fetchall())
    assert "Seq Scan on tickets" not in plan_text, plan_text
    assert "ix_tickets_claim" in plan_text


def test_heartbeat_renews_only_the_leases_the_process_knows_it_holds(conn, types, spec):
    held, orphan = create_tickets(conn, types, "testms", "pipe", [{}, {}])
    get_current_ticket_list(conn, spec, OWNER_A, 2)
    conn.execute(sql.REGISTER_PROCESS, {"owner": OWNER_A, "bot": spec.name, "host": "h", "pid": 1, "version": "t",
                                        "process_name": None})
    conn.execute("UPDATE tickets SET lease_expires_at = now(), due_at = now()")
    conn.execute(sql.HEARTBEAT, {"owner": OWNER_A, "lease_s": 60, "held": [held], "processed": 0, "failed": 0,
                                 "bot": "testms-pipe-1-first", "dead_after_s": 60, "loop_turns": 0})
    claimable = [t.id for t in get_current_ticket_list(conn, spec, OWNER_B, 10)]
    assert claimable == [orphan]


def _claimed(conn, types, spec_or_bot, owner, ticket_id):
    return next(t for t in get_current_ticket_list(conn, spec_or_bot, owner, 50) if t.id == ticket_id)


def _close_step(conn, types, synced, ticket_id, owner):
    """Claim `ticket_id` (state 3) and plan its move into the final state 4."""
    ticket = _claimed(conn, types, synced.bots["testms-pipe-3-third"], owner, ticket_id)
    return step_for(conn, types, ticket, Outcome("send"))


@pytest.mark.parametrize("first", ["close", "wait"])
def test_a_wait_racing_a_close_is_always_woken(db_url, conn, types, synced, spec, first):
    """Whichever of 'close T' and 'W waits for T' takes T's row lock first, W ends up woken."""
    import threading

    awaited, waiter = create_tickets(conn, types, "testms", "pipe", [{}, {}])
    conn.execute("UPDATE tickets SET state = 3 WHERE id = %s", (awaited,))
    close = _close_step(conn, types, synced, awaited, OWNER_B)
    wait = step_for(conn, types, _claimed(conn, types, spec, OWNER_A, waiter), Outcome("wait_ticket", ticket=awaited))
    steps = {"close": ([close], OWNER_B), "wait": ([wait], OWNER_A)}
    second = "wait" if first == "close" else "close"
    with connect(db_url) as holder, connect(db_url, autocommit=True) as other:
        with holder.transaction():
            add_ticket_to_proceeded_list(holder, types, *steps[first], "holder")
            # The second write blocks on the row lock the first holds until the first commits.
            thread = threading.Thread(target=add_ticket_to_proceeded_list,
                                      args=(other, types, *steps[second], "other"))
            thread.start()
            # Blocked on the lock, not merely unscheduled: the server says the other session waits for it.
            wait_until(lambda: conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid = %s", (other.info.backend_pid,)).fetchone()["n"] == 1,
                10, "the second write to wait for the first's row lock")
        thread.join(timeout=10)
        assert not thread.is_alive()
    woken = get_ticket(conn, waiter)
    assert (woken.waiting_for, woken.payload["woken_by"]) == (None, {"id": awaited, "state": 4})


@pytest.mark.processes
def test_sweep_wakes_a_ticket_left_waiting_for_a_closed_one(tmp_path, db_url, conn, types, synced, processes):
    awaited, waiter = create_tickets(conn, types, "testms", "pipe", [{}, {}])
    conn.execute("UPDATE tickets SET state = 4, closed_at = now() WHERE id = %s", (awaited,))
    # As if the process that closed it died before waking its waiter:
    conn.execute("UPDATE tickets SET waiting_for = %s, due_at = 'infinity' WHERE id = %s", (awaited, waiter))
    processes.start("testms-pipe-1-first", synced.root, db_url)
    wait_until(lambda: get_ticket(conn, waiter).state == 2, 30, "the sweep to wake the stranded ticket")


def test_full_config_sync_forgets_bots_no_longer_configured(conn, synced):
    conn.execute("INSERT INTO bots (name, metaservice, ticket_type, state, state_name) "
                 "VALUES ('old-gone-1-x', 'old', 'gone', 1, 'x')")
    sync_config(conn, synced, bot_names={"testms-pipe-1-first"})  # a bot's own sync keeps it
    assert conn.execute("SELECT count(*) AS n FROM bots WHERE name = 'old-gone-1-x'").fetchone()["n"] == 1
    sync_config(conn, synced)
    assert conn.execute("SELECT count(*) AS n FROM bots WHERE name = 'old-gone-1-x'").fetchone()["n"] == 0


def test_a_ticket_has_at_most_one_open_error_ticket_a_later_reason_goes_to_it_and_after_its_close_a_new_one(
        conn, types):
    parent_id = create_ticket(conn, types, "testms", "pipe")
    parent, kind = get_ticket(conn, parent_id), types.ticket_type("testms", "pipe")

    def raise_for(reason):
        with conn.transaction():
            return raise_error_ticket(conn, types, error_ticket(parent, kind, reason), parent_id=parent_id, actor="bot")
    first = raise_for("first")
    assert raise_for("second") == first
    assert get_ticket(conn, first).payload["reasons"] == ["first", "second"]
    # The database itself refuses a second open one, however it is made.
    with pytest.raises(psycopg.errors.UniqueViolation, match="uq_tickets_open_error"):
        create_ticket(conn, types, "botfleet", "error", {"reason": "third"}, parent_id=parent_id)
    send_ticket(conn, types, first, actor="ann")  # resolved: the next reason opens a new one
    second = raise_for("third")
    assert second != first and get_ticket(conn, second).payload["reasons"] == ["third"]


def test_a_step_written_again_after_its_reply_was_lost_creates_its_child_once_and_is_stale(conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    kind = types.ticket_type("testms", "pipe")
    ctx = Context(ticket, kind, "bot", new_id=lambda: conn.execute(sql.NEXT_TICKET_ID).fetchone()["id"])
    child = ctx.create_ticket("pipe")
    assert child.id is not None  # known while the step is planned
    step = Step(ticket, plan(ticket, kind, ctx.send_ticket(), retries=1, retry_backoff_s=0.1, children=ctx.children))
    assert [r["id"] for r in add_ticket_to_proceeded_list(conn, types, [step], OWNER_A, "bot").applied] == [ticket_id]
    again = add_ticket_to_proceeded_list(conn, types, [step], OWNER_A, "bot")
    assert (again.applied, again.stale) == ([], [step])
    children = conn.execute("SELECT id FROM tickets WHERE parent_id = %s", (ticket_id,)).fetchall()
    assert [r["id"] for r in children] == [child.id]


def test_a_stuck_stay_and_a_later_failure_of_the_same_ticket_share_one_error_ticket_which_it_waits_for(
        conn, types, spec):
    ticket_id = create_ticket(conn, types, "testms", "pipe")
    clock.shift(conn, 120)
    kind = types.ticket_type("testms", "pipe")
    assert report_stuck(conn, types, dataclasses.replace(spec, stuck_after_s=60.0), kind, "bot") == 1
    [error] = conn.execute("SELECT id, payload FROM tickets WHERE parent_id = %s", (ticket_id,)).fetchall()
    [ticket] = get_current_ticket_list(conn, spec, OWNER_A, 1)
    failed = step_for(conn, types, ticket, Outcome("fail", reason="gave up"))
    add_ticket_to_proceeded_list(conn, types, [failed], OWNER_A, "bot")
    assert get_ticket(conn, ticket_id).waiting_for == error["id"]
    [after] = conn.execute("SELECT id, payload FROM tickets WHERE parent_id = %s", (ticket_id,)).fetchall()
    assert after["payload"]["reasons"] == [error["payload"]["reason"], "gave up"]
