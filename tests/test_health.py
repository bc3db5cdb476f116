"""`botfleet check` and /healthz: the one-line verdict, as a table (no database)."""

import pytest

from watchdog.health import CRITICAL, OK, judge


def row(name="ms-t-1-a", health="healthy", reason="ok", enabled=True, watchdog_age_s=1.0, health_age_s=1.0):
    return {"watchdog_age_s": watchdog_age_s, "name": name, "enabled": enabled, "health": health,
            "health_reason": reason, "health_age_s": health_age_s}


@pytest.mark.parametrize("rows, code, line", [
    ([row(), row(name="ms-t-2-b")], OK, "OK: watchdog checked 1.0s ago; 2 bot(s) healthy"),
    ([row(), row(name="ms-t-2-b", enabled=False, health="disabled")], OK, "OK: watchdog checked 1.0s ago; 1 bot(s) healthy, 1 disabled"),
    ([row(watchdog_age_s=None)], CRITICAL, "CRITICAL: no watchdog has ever checked this fleet"),
    ([row(watchdog_age_s=12.5)], CRITICAL, "CRITICAL: watchdog heartbeat is stale: last check 12.5s ago (stale after 5s)"),
    ([row(health="hung", reason="ms-t-1-a hung: no heartbeat for 7.0s (pid 9)")], CRITICAL,
     "CRITICAL: 1 of 1 bot(s) unhealthy: ms-t-1-a hung: no heartbeat for 7.0s (pid 9)"),
    ([row(health="missing", reason="supervisord does not know this bot")], CRITICAL,
     "CRITICAL: 1 of 1 bot(s) unhealthy: ms-t-1-a missing: supervisord does not know this bot"),
    ([row(health=None, health_age_s=None)], CRITICAL, "CRITICAL: 1 of 1 bot(s) unhealthy: ms-t-1-a not checked recently"),
    ([row(health_age_s=60)], CRITICAL, "CRITICAL: 1 of 1 bot(s) unhealthy: ms-t-1-a not checked recently"),
])
def test_verdict(rows, code, line):
    result = judge(rows, stale_s=5)
    assert result[0] == code
    assert result[1].startswith(line)
