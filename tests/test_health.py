"""`botfleet check` and /healthz: the one-line verdict, as a table (no database)."""

import pytest

from watchdog.health import CRITICAL, OK, judge


def row(name="ms-t-1-a", health="healthy", reason="ok", enabled=True, watchdog_age_s=1.0, health_age_s=1.0,
        host="a", supervisor_error=None):
    return {"host": host, "watchdog_age_s": watchdog_age_s, "name": name, "enabled": enabled, "health": health,
            "health_reason": reason, "health_age_s": health_age_s, "supervisor_error": supervisor_error}


@pytest.mark.parametrize("rows, code, line", [
    ([row(), row(name="ms-t-2-b")], OK, "OK: watchdog checked 1.0s ago on a; 2 bot(s) healthy"),
    ([row(), row(name="ms-t-2-b", enabled=False, health="disabled")], OK,
     "OK: watchdog checked 1.0s ago on a; 1 bot(s) healthy, 1 disabled"),
    ([], CRITICAL, "CRITICAL: no watchdog has ever checked this fleet (is `botfleet watchdog run` running?)"),
    ([row(watchdog_age_s=None)], CRITICAL, "CRITICAL: a: no watchdog has ever checked (is `botfleet up` running there?)"),
    ([row(watchdog_age_s=12.5)], CRITICAL, "CRITICAL: a: watchdog heartbeat is stale: last check 12.5s ago (stale after 5s)"),
    ([row(health="hung", reason="ms-t-1-a hung: no heartbeat for 7.0s (pid 9)")], CRITICAL,
     "CRITICAL: a: ms-t-1-a hung: no heartbeat for 7.0s (pid 9)"),
    ([row(health="missing", reason="supervisord does not know this bot")], CRITICAL,
     "CRITICAL: a: ms-t-1-a missing: supervisord does not know this bot"),
    ([row(health=None, health_age_s=None)], CRITICAL, "CRITICAL: a: ms-t-1-a not checked recently"),
    ([row(health_age_s=60)], CRITICAL, "CRITICAL: a: ms-t-1-a not checked recently"),
    # Two hosts: the same bot counted once; the OK line names both hosts and the older check.
    ([row(host="a"), row(host="b", watchdog_age_s=2.0)], OK, "OK: watchdog checked 2.0s ago on a, b; 1 bot(s) healthy"),
    # A stopped watchdog stands for its host's bots (not each blamed), and the healthy host is not hidden.
    ([row(host="a", name="x-t-1-a"), row(host="b", name="x-t-2-b", watchdog_age_s=30.0, health_age_s=30.0)], CRITICAL,
     "CRITICAL: b: watchdog heartbeat is stale: last check 30.0s ago (stale after 5s)"),
    ([row(host="a"), row(host="b", health="hung", reason="ms-t-1-a hung: no heartbeat")], CRITICAL,
     "CRITICAL: b: ms-t-1-a hung: no heartbeat"),
    # A dead supervisord: its bots heartbeat on as healthy, and the host is named for it.
    ([row(host="a"), row(host="b", supervisor_error="supervisord is not running (...)")], CRITICAL,
     "CRITICAL: b: supervisord is not running (...)"),
    # A stalled bot names itself.
    ([row(health="stalled", reason="ms-t-1-a stalled: 3 ticket(s) wait for it and no step written for 60s")],
     CRITICAL, "CRITICAL: a: ms-t-1-a stalled: 3 ticket(s) wait for it and no step written for 60s"),
])
def test_verdict(rows, code, line):
    result = judge(rows, stale_s=5)
    assert result == (code, line)
