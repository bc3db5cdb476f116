"""The watchdog's decision, as a table: heartbeats and supervisord states in, health and actions out."""

import pytest

from watchdog.decide import (
    Heartbeat,
    Limits,
    Process,
    Retry,
    Stall,
    decide,
    restart_backoff,
    start_grace_s,
    waiting_tickets,
)

NOW = 1_000_000.0
LIMITS = Limits(hung_after_s=6, start_grace_s=10, fatal_backoff_s=10, fatal_backoff_max_s=300, restart_backoff_s=5,
                restart_backoff_max_s=120, reconnect_grace_s=7, stalled_after_s=60)
BOT = "ms-t-1-a"


def running(pid=100, age_s=3600, state="RUNNING", name=BOT, stopped_s=None):
    return Process(name=name, state=state, pid=pid, started_at=NOW - age_s,
                   stopped_at=0.0 if stopped_s is None else NOW - stopped_s)


def beat(pid=100, ago_s=1):
    return Heartbeat(pid=pid, heartbeat_at=NOW - ago_s)


def verdict(processes, heartbeats=(), enabled=True, replicas=1, retries=None, database_back_at=0.0):
    return decide(BOT, enabled=enabled, replicas=replicas, processes=processes, heartbeats=list(heartbeats),
                  now=NOW, limits=LIMITS, retries=retries or {}, database_back_at=database_back_at)


@pytest.mark.parametrize("supervised_states, heartbeats, health, actions", [
    ([running()], [beat(ago_s=1)], "healthy", []),
    ([running()], [beat(ago_s=5.9)], "healthy", []),
    # RUNNING but silent: hung (SIGSTOP, a deadlock, a lost connection it never noticed).
    ([running()], [beat(ago_s=7)], "hung", [("kill", "hung")]),
    ([running()], [], "hung", [("kill", "hung")]),
    # The heartbeat of an earlier process (another pid) does not count for this one.
    ([running(pid=200)], [beat(pid=100, ago_s=0)], "hung", [("kill", "hung")]),
    # Just started: it has start_grace + hung_after to register.
    ([running(age_s=3)], [], "starting", []),
    # ... but once it has heartbeated, the grace is over: silence is a hang.
    ([running(age_s=8)], [beat(ago_s=7)], "hung", [("kill", "hung")]),
    ([running(state="STARTING", age_s=1)], [], "starting", []),
    ([running(state="BACKOFF", age_s=1)], [], "starting", []),
    # Exited: supervisord's autorestart gets the first chance; still EXITED later, the watchdog starts it.
    ([running(state="EXITED", stopped_s=1)], [], "dead", []),
    ([running(state="EXITED", stopped_s=60)], [], "dead", [("start", "exited")]),
    ([running(state="FATAL")], [], "fatal", [("start", "fatal")]),
    # Stopped by an operator: respected, but not healthy.
    ([running(state="STOPPED")], [], "stopped", []),
    # Not in supervisord at all.
    ([], [], "missing", []),
])
def test_health_and_actions(supervised_states, heartbeats, health, actions):
    result = verdict(supervised_states, heartbeats)
    assert result.health == health, result.reason
    assert [(a.kind, a.reason) for a in result.actions] == actions


def test_disabled_bot_is_left_alone_whatever_its_state():
    result = verdict([running(state="FATAL")], enabled=False)
    assert (result.health, result.actions) == ("disabled", [])


def test_fatal_is_retried_with_growing_backoff_up_to_a_cap():
    retries, delays = {}, []
    now = NOW
    for _ in range(8):
        result = decide(BOT, enabled=True, replicas=1, processes=[Process(BOT, "FATAL", 0, NOW - 99)],
                        heartbeats=[], now=now, limits=LIMITS, retries=retries)
        assert [a.kind for a in result.actions] == ["start"]
        retries = result.retries
        delays.append(retries[BOT].next_at - now)
        # Before the backoff is over nothing is done.
        early = decide(BOT, enabled=True, replicas=1, processes=[Process(BOT, "FATAL", 0, NOW - 99)],
                       heartbeats=[], now=now + 1, limits=LIMITS, retries=retries)
        assert early.actions == [] and early.health == "fatal"
        now = retries[BOT].next_at
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


@pytest.mark.parametrize("state", ["STARTING", "BACKOFF"])
def test_a_fatal_bot_being_retried_stays_fatal_until_it_runs(state):
    result = verdict([running(state=state, age_s=1)], retries={BOT: Retry(attempts=2, next_at=NOW + 20)})
    assert (result.health, result.actions) == ("fatal", [])
    assert "went FATAL; the watchdog's start attempt 2" in result.reason
    assert result.retries == {BOT: Retry(attempts=2, next_at=NOW + 20)}


def test_retry_memory_is_forgotten_once_the_process_has_run_healthy_for_the_longest_backoff():
    result = verdict([running()], [beat()], retries={BOT: Retry(attempts=3, next_at=NOW)})
    assert result.health == "healthy"
    assert result.retries == {BOT: Retry(attempts=3, next_at=NOW, healthy_since=NOW, ran=True)}
    kept = verdict([running()], [beat()], retries={BOT: Retry(3, NOW, healthy_since=NOW - 119, ran=True)})
    assert kept.retries == {BOT: Retry(3, NOW, healthy_since=NOW - 119, ran=True)}
    assert verdict([running()], [beat()], retries={BOT: Retry(3, NOW, healthy_since=NOW - 120, ran=True)}).retries == {}
    # A break (hung for a moment, within the backoff) starts the healthy stretch again.
    broken = verdict([running()], [beat(ago_s=7)], retries={BOT: Retry(3, NOW + 9, healthy_since=NOW - 119, ran=True)})
    assert broken.retries == {BOT: Retry(3, NOW + 9, ran=True)}


def test_a_process_that_hangs_again_after_each_restart_is_killed_with_growing_backoff_up_to_a_cap():
    """The loop of the issue: killed, started, registered, hung again. Each kill comes later than the last."""
    retries, kills_at = {}, []
    now = NOW
    while len(kills_at) < 8:
        result = decide(BOT, enabled=True, replicas=1, processes=[Process(BOT, "RUNNING", 7, now - 30)],
                        heartbeats=[Heartbeat(7, now - 7)], now=now, limits=LIMITS, retries=retries)
        assert result.health == "hung", result.reason
        if result.actions:
            kills_at.append(now)
            assert [(a.kind, a.reason) for a in result.actions] == [("kill", "hung")]
            assert f"restart {len(kills_at)} in a row" in result.actions[0].detail
        else:
            assert f"restart {len(kills_at) + 1} in a row backs off, in " in result.reason
        # Healthy for a moment in between (it registered again): that is not long enough to forget.
        retries = decide(BOT, enabled=True, replicas=1, processes=[Process(BOT, "RUNNING", 7, now - 30)],
                         heartbeats=[Heartbeat(7, now)], now=now + 0.5, limits=LIMITS,
                         retries=result.retries).retries
        now += 1
    assert [round(b - a) for a, b in zip(kills_at, kills_at[1:], strict=False)] == [5, 10, 20, 40, 80, 120, 120]


@pytest.mark.parametrize("retry, health", [
    (Retry(1, NOW + 5, reason="hung"), "starting"),  # restarted after a hang: starting like any start
    (Retry(1, NOW + 5, reason="fatal"), "fatal"),  # the watchdog's start of a FATAL process: still fatal
    (Retry(1, NOW + 5, reason="fatal", ran=True), "starting"),  # it ran since: this is a new start
])
def test_a_starting_process_is_fatal_only_while_the_watchdog_retries_it_out_of_fatal(retry, health):
    assert verdict([running(state="STARTING", age_s=1)], retries={BOT: retry}).health == health


def test_restart_backoff_is_what_status_and_the_metrics_show():
    assert restart_backoff({}, NOW) == (0, None)
    assert restart_backoff({"a": Retry(2, NOW + 9, "hung"), "b": Retry(1, NOW - 1, "hung")}, NOW) == (2, NOW + 9)
    assert restart_backoff({"a": Retry(3, NOW - 1, "hung")}, NOW) == (3, None)


# -- the start grace ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("configured_s, starts_s, grace_s", [
    (10, [], 10),  # nothing seen yet: as configured
    (10, [3, 4], 10),  # starts well within it
    (10, [3, 7.5], 15),  # a start of 7.5 s: twice that
    (0.5, [5.2], 10.4),  # a grace far too short for this host grows to what starts take
    (10, [200], 120),  # up to the longest backoff
])
def test_the_start_grace_follows_the_slowest_recent_start_on_this_host(configured_s, starts_s, grace_s):
    assert start_grace_s(configured_s, starts_s, max_s=120) == pytest.approx(grace_s)


def test_a_process_killed_for_not_registering_gets_twice_the_grace_the_next_time():
    # Started 20 s ago, not registered: past 10 + 6 it is killed...
    first = verdict([running(age_s=20)])
    assert [a.reason for a in first.actions] == ["hung"] and "never registered" in first.reason
    # ...and its next start has 20 + 6 s, within the backoff's window or after it.
    again = verdict([running(pid=101, age_s=20)], retries={BOT: Retry(1, NOW - 1, "hung")})
    assert (again.health, again.actions) == ("starting", [])
    assert [a.reason for a in verdict([running(pid=101, age_s=27)],
                                      retries={BOT: Retry(1, NOW - 1, "hung")}).actions] == ["hung"]


@pytest.mark.parametrize("started_s, busy, health", [
    (30, True, "starting"),  # past its grace, but still using CPU: a busy host slows its start
    (30, False, "hung"),  # past its grace and idle: it hangs
    (127, True, "hung"),  # busy, but past the longest grace (120 s) and the hung threshold: it never registers
])
def test_a_process_still_busy_starting_is_given_time_up_to_the_longest_grace(started_s, busy, health):
    process = Process(BOT, "RUNNING", 100, NOW - started_s, busy=busy)
    assert verdict([process]).health == health


# -- a stalled database ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stalled_ago_s, health", [(0.1, "starting"), (5.9, "starting"), (6.1, "hung")])
def test_silence_is_excused_for_a_hung_threshold_after_the_database_held_the_watchdog_up(stalled_ago_s, health):
    """A frozen server held every heartbeat and the watchdog's own statements alike: silence from before it
    answered again says nothing about the bots, and a bot that does not heartbeat within a hung threshold after
    it is hung."""
    result = decide(BOT, enabled=True, replicas=1, processes=[running()], heartbeats=[beat(ago_s=11)], now=NOW,
                    limits=LIMITS, retries={}, database_stalled_at=NOW - stalled_ago_s)
    assert result.health == health, result.reason
    assert [a.kind for a in result.actions] == ([] if health == "starting" else ["kill"])
    if health == "starting":
        assert "held the watchdog's own statements too" in result.reason


# -- a stalled bot: due work, and no step written ------------------------------------------------------

def progress(pid_counts, since=None):
    return Stall(dict(pid_counts), since)


@pytest.mark.parametrize("stall, processed, waiting, health, since", [
    # Nothing remembered yet: the stretch starts now.
    (None, 5, 3, "healthy", NOW),
    # Work waits and nobody wrote a step for a minute: stalled.
    (progress({100: 5}, NOW - 60), 5, 3, "stalled", NOW - 60),
    (progress({100: 5}, NOW - 59), 5, 3, "healthy", NOW - 59),
    # A step written (the counter grew) starts the stretch again.
    (progress({100: 5}, NOW - 600), 6, 3, "healthy", NOW),
    # No work waiting: not stalled, however quiet.
    (progress({100: 5}, NOW - 600), 5, 0, "healthy", None),
    # Work arrives after a quiet spell without any: the stretch starts with it.
    (progress({100: 5}), 5, 1, "healthy", NOW),
])
def test_a_bot_whose_work_waits_while_no_step_is_written_is_stalled(stall, processed, waiting, health, since):
    result = decide(BOT, enabled=True, replicas=1, processes=[running()],
                    heartbeats=[Heartbeat(100, NOW - 1, processed)], now=NOW, limits=LIMITS, retries={},
                    waiting=waiting, stall=stall)
    assert result.health == health, result.reason
    assert result.actions == []  # reported, never restarted
    assert result.stall == Stall({100: processed}, since)
    if health == "stalled":
        assert result.reason == (f"{BOT} stalled: 3 ticket(s) wait for it and no step written for 60s, though its "
                                 f"processes heartbeat (its threads are busy with handlers that do not finish; see "
                                 f"its log)")


def test_a_new_process_that_has_written_nothing_is_no_progress():
    """A restart gives a new pid whose counter starts at 0: the bot as a whole still completes nothing."""
    result = decide(BOT, enabled=True, replicas=1, processes=[running(pid=200)],
                    heartbeats=[Heartbeat(200, NOW - 1, 0)], now=NOW, limits=LIMITS, retries={}, waiting=2,
                    stall=progress({100: 7}, NOW - 61))
    assert result.health == "stalled"


@pytest.mark.parametrize("supervised_states, heartbeats, health", [
    ([running(age_s=3)], [], "starting"),  # not registered yet: starting says more than stalled
    ([running()], [beat(ago_s=30)], "hung"),  # hung says more, and is acted on
])
def test_a_bot_that_is_not_healthy_otherwise_is_not_called_stalled(supervised_states, heartbeats, health):
    result = decide(BOT, enabled=True, replicas=1, processes=supervised_states, heartbeats=heartbeats, now=NOW,
                    limits=LIMITS, retries={}, waiting=5, stall=progress({}, NOW - 600))
    assert result.health == health


def test_bots_without_handlers_are_never_stalled():
    """`waiting` None: a duty, a final state, external work, an exclusive type: no memory, never stalled."""
    result = decide(BOT, enabled=True, replicas=1, processes=[running()], heartbeats=[beat()], now=NOW,
                    limits=LIMITS, retries={}, waiting=None, stall=progress({100: 0}, NOW - 600))
    assert (result.health, result.stall) == ("healthy", None)


@pytest.mark.parametrize("claimable, in_hand, threads, replicas, waiting", [
    (0, 4, 4, 1, 0),  # four tickets on four threads: nothing waits
    (0, 5, 4, 1, 1),  # a fifth claimed into the batch waits for a thread
    (2, 0, 4, 1, 2),  # due and nobody claims them
    (2, 9, 4, 2, 3),  # two processes: eight threads
])
def test_waiting_tickets_are_the_claimable_ones_and_those_held_beyond_the_threads(claimable, in_hand, threads,
                                                                                   replicas, waiting):
    assert waiting_tickets(claimable, in_hand, threads, replicas) == waiting


def test_worst_replica_decides_and_every_hung_replica_is_killed():
    processes = [running(pid=1, name=f"{BOT}-0"), running(pid=2, name=f"{BOT}-1"), running(pid=3, name=f"{BOT}-2")]
    result = verdict(processes, [beat(pid=1), beat(pid=2, ago_s=30)], replicas=3)
    assert result.health == "hung"
    assert [a.process for a in result.actions] == [f"{BOT}-1", f"{BOT}-2"]


def test_fewer_replicas_in_supervisord_than_configured_is_missing():
    assert verdict([running()], [beat()], replicas=2).health == "missing"


@pytest.mark.parametrize("heartbeats, health", [([beat()], "healthy"), ([beat(ago_s=60)], "unknown")])
def test_without_supervisord_heartbeats_alone_decide(heartbeats, health):
    result = verdict(None, heartbeats)
    assert (result.health, result.actions) == (health, [])


def test_reasons_say_what_is_wrong():
    assert "no heartbeat for 7.0s (pid 100)" in verdict([running()], [beat(ago_s=7)]).reason
    assert "supervisorctl update" in verdict([]).reason


@pytest.mark.parametrize("back_ago_s, health", [(1, "starting"), (12.9, "starting"), (13.1, "hung")])
def test_stale_heartbeats_are_excused_while_bots_reconnect_after_a_database_outage(back_ago_s, health):
    result = verdict([running()], [beat(ago_s=20)], database_back_at=NOW - back_ago_s)
    assert result.health == health
    assert [a.kind for a in result.actions] == ([] if health == "starting" else ["kill"])
