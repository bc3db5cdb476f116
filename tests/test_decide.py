"""The watchdog's decision, as a table: heartbeats and supervisord states in, health and actions out."""

import pytest

from watchdog.decide import Heartbeat, Limits, Process, Retry, decide

NOW = 1_000_000.0
LIMITS = Limits(hung_after_s=6, start_grace_s=10, fatal_backoff_s=10, fatal_backoff_max_s=300, reconnect_grace_s=7)
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


def test_retry_memory_is_forgotten_once_the_process_runs():
    result = verdict([running()], [beat()], retries={BOT: Retry(attempts=3, next_at=NOW)})
    assert result.health == "healthy" and result.retries == {}


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
