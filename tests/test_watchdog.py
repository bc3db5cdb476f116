"""The watchdog with a real supervisord, real bot processes and real faults (SIGSTOP, SIGKILL, bad config)."""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from common import engine
from tests.conftest import ROOT, BOTFLEET, stays_true, wait_until

pytestmark = pytest.mark.processes

BOT = "testms-pipe-2-second"
# Test fleets heartbeat every 500 ms; a bot is hung after 3 missed heartbeats.
HUNG_AFTER_S = 1.5


def events(conn, bot, action=None):
    rows = conn.execute("SELECT action, reason FROM watchdog_events WHERE bot = %s ORDER BY id", (bot,)).fetchall()
    return [(r["action"], r["reason"]) for r in rows if action is None or r["action"] == action]


def health(conn, bot):
    return conn.execute("SELECT health, health_reason FROM bots WHERE name = %s", (bot,)).fetchone()


def settled(fleet, group, name):
    """Running long enough that the watchdog no longer treats it as starting (start_grace 3 s + 1.5 s)."""
    info = fleet.info(group, name)
    return info["statename"] == "RUNNING" and info["now"] - info["start"] > 5


def test_sigstopped_bot_is_declared_hung_and_restarted_and_its_ticket_completes(supervised, conn):
    fleet = supervised(bots={BOT: "handler: tests.handlers:slow\n"},
                       bot_defaults={"lease": "2s", "sweep_interval": "1s"}).start()
    wait_until(lambda: settled(fleet, "testms", BOT), 30, "the bot to settle")
    ticket_id = engine.create_ticket(conn, engine.type_index(fleet.config), "testms", "pipe", {"sleep_s": 0.5})
    wait_until(lambda: list(fleet.marks.glob(f"*-{ticket_id}-2-start")), 30, "the handler to start")
    frozen = fleet.info("testms", BOT)["pid"]
    os.kill(frozen, signal.SIGSTOP)
    stopped_at = time.monotonic()
    # Hung within two thresholds of its last heartbeat (plus a check interval of slack).
    wait_until(lambda: events(conn, BOT, "restart"), 2 * HUNG_AFTER_S + 1.0, "the watchdog to restart the hung bot")
    assert time.monotonic() - stopped_at <= 2 * HUNG_AFTER_S + 1.0
    [(_, reason)] = events(conn, BOT, "restart")
    assert reason.startswith("hung: no heartbeat for") and f"(pid {frozen})" in reason
    wait_until(lambda: engine.get_ticket(conn, ticket_id).closed_at is not None, 30, "the ticket to complete")
    starts = sorted(fleet.marks.glob(f"*-{ticket_id}-2-start"))
    # The frozen process never finished it; the new one did, once.
    assert len(starts) == 2 and starts[-1].name.split("-")[1] != str(frozen)
    assert [e["to_state"] for e in engine.get_events(conn, ticket_id) if e["kind"] == "transitioned"] == [2, 3, 4]
    wait_until(lambda: fleet.check()[0] == 0, 30, "botfleet check to be OK again")


def test_watchdog_down_makes_check_fail_and_supervisord_restarts_a_killed_watchdog(supervised):
    fleet = supervised().start()
    wait_until(lambda: fleet.check()[0] == 0, 30, "botfleet check to be OK")
    fleet.rpc.stopProcess("watchdog:watchdog")
    code, line = wait_until(lambda: (lambda r: r if r[0] != 0 else None)(fleet.check()), 30,
                            "botfleet check to notice the watchdog is down")
    assert code == 2 and "watchdog heartbeat is stale" in line
    fleet.rpc.startProcess("watchdog:watchdog")
    wait_until(lambda: fleet.check()[0] == 0, 30, "botfleet check to be OK with the watchdog back")
    killed = fleet.info("watchdog", "watchdog")["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: fleet.info("watchdog", "watchdog")["statename"] == "RUNNING"
               and fleet.info("watchdog", "watchdog")["pid"] != killed, 30, "supervisord to restart the watchdog")
    wait_until(lambda: fleet.check()[0] == 0, 30, "botfleet check to be OK after the restart")


def test_bot_whose_config_became_invalid_exits_78_ends_fatal_and_is_reported(supervised, conn):
    fleet = supervised().start()
    (fleet.config_dir / "bots" / f"{BOT}.yaml").write_text("handler: tests.handlers:vanished\n")
    os.kill(fleet.info("testms", BOT)["pid"], signal.SIGKILL)
    # supervisord retries a process that dies before startsecs a few times, then gives up: FATAL.
    wait_until(lambda: fleet.info("testms", BOT)["statename"] == "FATAL", 60, "supervisord to give up (FATAL)")
    supervisord_log = (fleet.project / "var" / "log" / "supervisord.log").read_text()
    assert f"exited: {BOT} (exit status 78; not expected)" in supervisord_log
    log = (fleet.project / "var" / "log" / f"{BOT}.log").read_text()
    assert "handler: module 'tests.handlers' has no function 'vanished'" in log
    wait_until(lambda: health(conn, BOT)["health"] == "fatal", 10, "the watchdog to report the bot FATAL")
    wait_until(lambda: [r for a, r in events(conn, BOT, "restart") if r.startswith("fatal:")], 10,
               "the watchdog to retry the FATAL bot")
    code, line = fleet.check()
    assert code == 2 and BOT in line and "FATAL" in line


def test_disabled_bot_is_left_alone_and_reported_disabled(supervised, conn):
    fleet = supervised().start()
    wait_until(lambda: settled(fleet, "testms", BOT), 30, "the bot to settle")
    env = {**os.environ, "DATABASE_URL": fleet.db_url}
    subprocess.run([*BOTFLEET, "--config", str(fleet.config_dir), "bot", "disable", BOT], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=60)
    frozen = fleet.info("testms", BOT)["pid"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_until(lambda: health(conn, BOT)["health"] == "disabled", 10, "the bot to be reported disabled")
        stays_true(lambda: not events(conn, BOT, "restart"), 3 * HUNG_AFTER_S, "no restart of a disabled bot")
        code, line = fleet.check()
        assert code == 0 and "1 disabled" in line
        subprocess.run([*BOTFLEET, "--config", str(fleet.config_dir), "bot", "enable", BOT], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=60)
        wait_until(lambda: events(conn, BOT, "restart"), 10, "the re-enabled hung bot to be restarted")
    finally:
        os.kill(frozen, signal.SIGCONT) if _alive(frozen) else None


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_metrics_and_healthz_are_served(supervised, conn):
    fleet = supervised().start()
    types = engine.type_index(fleet.config)
    ids = engine.create_tickets(conn, types, "testms", "pipe", [{} for _ in range(20)])
    wait_until(lambda: all(engine.get_ticket(conn, i).closed_at for i in ids), 30, "the tickets to finish")
    base = f"http://127.0.0.1:{fleet.port}"

    def transitions_counted():
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        line = next((l for l in text.splitlines() if l.startswith("botfleet_transitions_total{")
                     and 'bot="testms-pipe-1-first"' in l), None)
        return text if line and float(line.rsplit(" ", 1)[1]) == 20 else None
    text = wait_until(transitions_counted, 10, "the bots' counts to reach /metrics (with their heartbeat)")
    assert 'botfleet_bot_up{bot="testms-pipe-1-first",metaservice="testms",state="1",ticket_type="pipe"} 1.0' in text
    assert "botfleet_hop_latency_seconds_count{" in text and "botfleet_database_up 1.0" in text

    last = {}
    def healthz():
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                last["answer"] = (response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            last["answer"] = (exc.code, exc.read().decode())
        return last["answer"]
    # Bots work before supervisord calls them RUNNING (startsecs); until then they are "starting"
    # and /healthz rightly answers 503, so wait for the first check after every bot is RUNNING.
    wait_until(lambda: healthz()[0] == 200 and last["answer"][1].startswith("OK:"), 15,
               lambda: f"/healthz to answer 200 OK, last answer {last.get('answer')}")
    fleet.rpc.stopProcess(f"testms:{BOT}")
    wait_until(lambda: healthz()[0] == 503 and BOT in last["answer"][1], 10,
               lambda: f"/healthz to answer 503 naming the stopped bot, last answer {last.get('answer')}")
