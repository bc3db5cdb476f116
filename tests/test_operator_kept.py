"""What the operator said is kept (issue 19): a disabled bot stays stopped whatever restarts the fleet (`down` and
`up`, `supervisorctl update`), and one started anyway exits at once without claiming anything; `botfleet reload`
brings a running fleet, the API and the watchdog included, onto a changed config folder without losing work."""

import subprocess

import httpx
import pytest

from common.access.tokens import create_token
from common.config.builtin import API_BOT
from common.tickets.create import create_ticket, create_tickets
from common.tickets.read import get_events, get_ticket
from tests.conftest import PIPELINE_TYPE, THREE_STATES
from tests.harness import BOTFLEET, ROOT, child_env, free_port, stays_true, wait_until

pytestmark = pytest.mark.processes

BOT = "testms-pipe-2-second"
THIRD = "testms-pipe-3-third"


def botfleet(fleet, *args, timeout=120):
    """The real command line on this fleet's config folder (and so its var folder), as an operator runs it."""
    result = subprocess.run([*BOTFLEET, "--config", str(fleet.config_dir), *args], cwd=ROOT,
                            env=child_env(fleet.db_url), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (args, result.stdout + result.stderr)
    return result.stdout


def untouched_in_state_2(conn, ticket_id) -> bool:
    """The ticket waits in state 2, in nobody's hands, and nothing was done to it there."""
    ticket = get_ticket(conn, ticket_id)
    return (ticket.state == 2 and ticket.lease_owner is None
            and not [e for e in get_events(conn, ticket_id) if e["from_state"] == 2 or e["kind"] == "error"])


def refusals(fleet) -> int:
    """How many times BOT started and refused to run as disabled (one line of its log each)."""
    path = fleet.paths.log_dir / f"{BOT}.log"
    return path.read_text(errors="replace").count(f"bot {BOT} is disabled in the database") if path.exists() else 0


def test_a_disabled_bot_is_not_started_by_down_and_up_nor_by_supervisorctl_update(supervised, conn):
    fleet = supervised().start()
    botfleet(fleet, "bot", "disable", BOT)
    # Disabled in the database alone, as by a `bot disable` on another host: this host's files do not say so.
    conn.execute("UPDATE bots SET enabled = false WHERE name = %s", (THIRD,))
    fleet.stop()  # as `botfleet down`
    fleet.start()  # as `botfleet up --daemon`: renders with the database's view, waits for the enabled bots
    states = fleet.states()
    assert (states[BOT], states[THIRD], states["testms-pipe-1-first"]) == ("STOPPED", "STOPPED", "RUNNING"), states
    ticket_id = create_ticket(conn, fleet.config, "testms", "pipe", {})
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the ticket to reach the disabled bot's state")

    # A config change to the metaservice, loaded the way README's step 4 says: supervisord restarts the whole
    # group, and starts what its files say to start.
    first_pid = fleet.info("testms", "testms-pipe-1-first")["pid"]
    type_file = fleet.config_dir / "ticket_types" / "testms" / "pipe.yaml"
    type_file.write_text(PIPELINE_TYPE.replace("three working states", "three working states (edited)"))
    botfleet(fleet, "supervisor", "render")
    assert "testms: updated process group" in botfleet(fleet, "supervisorctl", "update")
    wait_until(lambda: fleet.info("testms", "testms-pipe-1-first")["statename"] == "RUNNING"
               and fleet.info("testms", "testms-pipe-1-first")["pid"] != first_pid, 30, "the group to restart")
    stays_true(lambda: fleet.states()[BOT] == fleet.states()[THIRD] == "STOPPED"
               and untouched_in_state_2(conn, ticket_id), 3, "the disabled bots staying stopped")

    botfleet(fleet, "bot", "enable", BOT)
    botfleet(fleet, "bot", "enable", THIRD)
    wait_until(lambda: get_ticket(conn, ticket_id).closed_at is not None, 30, "the enabled bots to finish the ticket")


def test_a_disabled_bot_started_anyway_exits_at_once_without_claiming_anything(supervised, conn):
    fleet = supervised().start()
    botfleet(fleet, "bot", "disable", BOT)
    ticket_id = create_ticket(conn, fleet.config, "testms", "pipe", {})
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the ticket to reach the disabled bot's state")
    fleet.rpc.startProcess(f"testms:{BOT}", False)  # a person, or a supervisord that does not know, starts it
    wait_until(lambda: refusals(fleet) == 1 and fleet.states()[BOT] in ("FATAL", "EXITED"), 30,
               lambda: f"the bot to refuse and exit (it is {fleet.states()[BOT]}): {fleet.log_tail(BOT, 600)}")
    # Not restarted by supervisord (nor by the watchdog), and the ticket was never touched.
    stays_true(lambda: fleet.states()[BOT] in ("FATAL", "EXITED") and refusals(fleet) == 1
               and untouched_in_state_2(conn, ticket_id), 3, "the disabled bot staying down, the ticket untouched")
    assert get_ticket(conn, ticket_id).attempts == 0


def test_reload_brings_a_new_ticket_type_to_the_running_fleet_and_the_api_without_losing_work(supervised, conn):
    port = free_port()
    # Slow first steps, so that tickets are in the bots' hands while their processes are restarted.
    fleet = supervised(fleet_extra=f"api:\n  listen: 127.0.0.1:{port}\n",
                       bots={"testms-pipe-1-first": "handler: tests.handlers:slow\n"}).start()
    token = create_token(conn, "ci", "read,submit")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def post(ticket_type):
        try:
            return api.post("/tickets", json={"metaservice": "testms", "type": ticket_type}).status_code
        except httpx.TransportError:
            return None
    wait_until(lambda: post("pipe") == 201, 30, "the API to answer")
    before = {name: fleet.processes()[name]["pid"] for name in (API_BOT, "watchdog", "testms-pipe-1-first")}

    # A new type with its bots, in the running fleet's config folder.
    (fleet.config_dir / "ticket_types" / "testms" / "extra.yaml").write_text(THREE_STATES)
    for name in ("testms-extra-1-a", "testms-extra-2-b"):
        (fleet.config_dir / "bots" / f"{name}.yaml").write_text("handler: tests.handlers:advance\n")
    (fleet.config_dir / "bots" / "testms-extra-3-c.yaml").write_text("")
    assert post("extra") == 422  # the running API knows only the types it started with

    in_flight = create_tickets(conn, fleet.config, "testms", "pipe", [{"sleep_s": 0.3} for _ in range(24)])
    out = botfleet(fleet, "reload")
    assert "testms: restarted on the new config" in out and "botfleet: restarted on the new config" in out, out
    assert "watchdog: restarted on the new config" in out and out.rstrip().endswith("RUNNING"), out
    after = {name: fleet.processes()[name] for name in before}
    assert all(after[name]["statename"] == "RUNNING" and after[name]["pid"] != before[name] for name in before), after

    # The API answers for the new type, and the new type's bots run it to its end.
    wait_until(lambda: post("extra") == 201, 30, "the reloaded API to accept the new type")
    extra = conn.execute("SELECT id FROM tickets WHERE ticket_type = 'extra'").fetchone()["id"]
    wait_until(lambda: get_ticket(conn, extra).closed_at is not None, 30, "the new type's bots to finish its ticket")
    # Nothing lost, nothing done twice: every ticket in flight went through each state once.
    wait_until(lambda: all(get_ticket(conn, i).closed_at for i in in_flight), 60, "the tickets in flight to finish")
    for ticket_id in in_flight:
        moves = [e["to_state"] for e in get_events(conn, ticket_id) if e["kind"] == "transitioned"]
        assert moves == [2, 3, 4], (ticket_id, moves)
    wait_until(lambda: fleet.check()[0] == 0, 30, lambda: f"botfleet check to be OK: {fleet.check()}")


def test_the_documented_steps_of_adding_a_type_restart_the_api_onto_it(supervised, conn):
    """README's step 4 without `reload`: `db upgrade`, `supervisor render`, `supervisorctl update`. Every program
    carries the config's digest, so the update restarts the API (and the watchdog) too, not only the new bots."""
    port = free_port()
    fleet = supervised(fleet_extra=f"api:\n  listen: 127.0.0.1:{port}\n").start()
    token = create_token(conn, "ci", "read,submit")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def post_extra():
        try:
            return api.post("/tickets", json={"metaservice": "testms", "type": "extra"}).status_code
        except httpx.TransportError:
            return None
    wait_until(lambda: post_extra() == 422, 30, "the API to answer (422: it does not know the type yet)")
    (fleet.config_dir / "ticket_types" / "testms" / "extra.yaml").write_text(THREE_STATES)
    for name in ("testms-extra-1-a", "testms-extra-2-b"):
        (fleet.config_dir / "bots" / f"{name}.yaml").write_text("handler: tests.handlers:advance\n")
    (fleet.config_dir / "bots" / "testms-extra-3-c.yaml").write_text("")
    botfleet(fleet, "db", "upgrade")
    botfleet(fleet, "supervisor", "render")
    updated = botfleet(fleet, "supervisorctl", "update")
    assert "botfleet: updated process group" in updated and "watchdog: updated process group" in updated, updated
    wait_until(lambda: post_extra() == 201, 30, "the restarted API to accept the new type")
