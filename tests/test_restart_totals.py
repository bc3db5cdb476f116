"""Restarts are counted as they are recorded, so pruning old watchdog events never lowers the counter."""

from common.store import sql
from watchdog.collector import scrape_text


def record(conn, bot, action, reason):
    conn.execute(sql.RECORD_WATCHDOG_EVENT, {"watchdog": "w", "bot": bot, "action": action, "reason": reason})


def restarts(db_url) -> dict:
    lines = [line for line in scrape_text(db_url).splitlines() if line.startswith("botfleet_watchdog_restarts_total{")]
    return {line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}


def test_restart_totals_survive_the_pruning_of_old_events(db_url, conn):
    record(conn, "ms-t-1-a", "restart", "crash: supervisord restarted ms-t-1-a (pid 1 -> 2)")
    record(conn, "ms-t-1-a", "restart", "crash: supervisord restarted ms-t-1-a (pid 2 -> 3)")
    record(conn, "ms-t-1-a", "restart", "hung: no heartbeat for 6.1s")
    record(conn, "ms-t-1-a", "health", "healthy -> hung: no heartbeat for 6.1s")
    before = restarts(db_url)
    assert before == {'bot="ms-t-1-a",reason="crash"': 2.0, 'bot="ms-t-1-a",reason="hung"': 1.0}
    conn.execute("UPDATE watchdog_events SET at = now() - interval '31 days'")
    conn.execute(sql.PRUNE_WATCHDOG_EVENTS)
    assert conn.execute("SELECT count(*) AS n FROM watchdog_events").fetchone()["n"] == 0
    assert restarts(db_url) == before
