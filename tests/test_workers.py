"""Pulling workers (seed 002) over HTTP, against the real API process, the real controller bot and the
real database: work handed out oldest first, progress recorded once, finishing along the graph, and the
controller's duties: a rogue worker's abandoned ticket, a silent worker's ticket taken back, the third
abandonment failing the ticket, and a second process under one worker name refused."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.access.tokens import create_token
from common.store.clock import shift
from tests.conftest import BOTFLEET, stays_true, wait_until
from tests.harness import child_env
from tests.test_api import serve_api
from watchdog.collector import scrape_text
from workers.client import WorkerClient, WorkerError

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
STALL_S = 60

# A generator's queue: state 1 is worked by external workers; 2 done, 3 failed.
GEN_TYPE = """lifetime: 1d
notification_frequency: 1d
retention: 1d
states:
  - {code: 1, name: generating}
  - {code: 2, name: generated, final: true}
  - {code: 3, name: failed, final: true}
transitions: [[1, 2, 3]]
"""
EXTERNAL = f"""worker: external
progress: [GENERATION_START, GENERATION_END]
stall_timeout: {STALL_S}s
"""
PIPE_TYPE = """lifetime: 1d
notification_frequency: 1d
retention: 1d
states:
  - {code: 1, name: first}
  - {code: 2, name: last, final: true}
transitions: [[1, 2]]
"""


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    """The API for gen/site (its failure state 3) and gen/page (no failure state: an error ticket), with a
    token of the work scope."""
    server = serve_api(tmp_path, db_url, conn, processes,
                       types={"gen/site": GEN_TYPE, "gen/page": GEN_TYPE, "testms/pipe": PIPE_TYPE},
                       bots={"gen-site-1-generating": EXTERNAL + "failure_state: 3\n",
                             "gen-page-1-generating": EXTERNAL})
    server.tokens["work"] = create_token(conn, "generators", "work")
    server.db_url, server.processes, server.conn = db_url, processes, conn
    return server


def worker(api, name="gen-1", ticket_type="gen/site", session=None) -> WorkerClient:
    return WorkerClient(api.base_url, api.tokens["work"], name=name, ticket_type=ticket_type, session=session)


def new_site(api, ticket_type="site", **payload) -> int:
    with api.client() as client:
        response = client.post("/tickets", json={"metaservice": "gen", "type": ticket_type, "payload": payload})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def events(api, ticket_id) -> list:
    with api.client() as client:
        return client.get(f"/tickets/{ticket_id}/events").json()


def kinds(api, ticket_id) -> list:
    return [e["kind"] for e in events(api, ticket_id)]


def ticket(api, ticket_id) -> dict:
    with api.client() as client:
        return client.get(f"/tickets/{ticket_id}").json()


def refusal(call) -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        call()
    return caught.value


def test_a_worker_takes_the_oldest_site_reports_progress_once_and_finishes_it(api):
    first, second = new_site(api, site="foo"), new_site(api, site="bar")
    gen = worker(api)
    held = gen.next_ticket()
    assert (held["id"], held["payload"]) == (first, {"site": "foo"})
    assert worker(api, "gen-2").next_ticket()["id"] == second  # held tickets are not handed out twice

    assert gen.progress(first, "GENERATION_START") is True
    assert gen.progress(first, "GENERATION_START") is False  # a repeat records nothing
    assert gen.progress(first, "GENERATION_COFFEE") is False  # a message the state does not list
    assert gen.progress(second, "GENERATION_END") is False  # a ticket gen-1 does not hold
    done = gen.finish(first, payload={"pages": 12})
    assert (done["state"], done["state_name"], done["payload"]) == (2, "generated", {"site": "foo", "pages": 12})
    assert done["closed_at"] is not None
    last = events(api, first)
    assert [e["kind"] for e in last] == ["created", "handed_out", "transitioned", "closed"]
    assert last[1]["detail"] == {"worker": "gen-1", "attempt": 1}
    assert last[2]["actor"] == "worker:gen-1" and list(last[2]["detail"]["progress"]) == ["GENERATION_START"]
    assert gen.progress(first, "GENERATION_END") is False  # finished: no longer held
    assert refusal(lambda: gen.finish(first)).code == "not_held"
    assert gen.next_ticket() is None  # 204: nothing else is due


def test_finishing_to_a_state_the_graph_forbids_is_refused_and_the_worker_keeps_its_ticket(api):
    site = new_site(api, site="foo")
    gen = worker(api)
    gen.next_ticket()
    before = events(api, site)
    error = refusal(lambda: gen.finish(site, to=1))
    assert (error.status, error.code) == (409, "transition_not_allowed")
    assert events(api, site) == before and ticket(api, site)["state"] == 1
    assert gen.finish(site, to=3, payload={"error": "disk full"})["state_name"] == "failed"  # an alternate is fine


def test_a_rogue_worker_asking_again_abandons_its_site_which_is_queued_again_with_its_progress_cleared(api):
    site, later = new_site(api, site="foo"), new_site(api, site="bar")
    gen = worker(api)
    assert gen.next_ticket()["id"] == site
    assert gen.progress(site, "GENERATION_START")
    again = gen.next_ticket()  # it asks again without finishing: the site is abandoned, and still the oldest
    assert again["id"] == site
    history = events(api, site)
    abandoned = next(e for e in history if e["kind"] == "abandoned")
    assert abandoned["detail"]["worker"] == "gen-1" and abandoned["detail"]["attempt"] == 1
    assert list(abandoned["detail"]["progress"]) == ["GENERATION_START"]  # what it had done, kept in the event
    assert gen.progress(site, "GENERATION_START") is True  # cleared: this hold starts afresh
    assert worker(api, "gen-2").next_ticket()["id"] == later  # gen-1 never holds two
    with api.conn.cursor() as cur:
        held = cur.execute("SELECT count(*) AS n FROM tickets WHERE lease_owner = 'worker:gen-1'").fetchone()["n"]
    assert held == 1


@pytest.mark.parametrize("ticket_type, failure", [("site", "failure_state"), ("page", "error_ticket")])
def test_the_third_abandonment_fails_the_ticket_and_it_is_never_handed_out_again(api, ticket_type, failure):
    api.processes.start(f"gen-{ticket_type}-1-generating", api.config_dir, api.db_url)  # the controller
    site = new_site(api, ticket_type, site="foo")
    gen = worker(api, ticket_type=f"gen/{ticket_type}")
    assert gen.next_ticket()["id"] == site
    assert gen.next_ticket()["id"] == site  # abandoned once
    assert gen.next_ticket()["id"] == site  # twice
    assert gen.next_ticket() is None  # the third: max_attempts (3) used up, never handed out again
    assert kinds(api, site).count("abandoned") == 3
    if failure == "failure_state":
        wait_until(lambda: ticket(api, site)["state_name"] == "failed", 30, "the controller to fail the site")
        reason = next(e for e in events(api, site) if e["kind"] == "transitioned")["detail"]["reason"]
        assert "3 holds" in reason
    else:
        wait_until(lambda: "escalated" in kinds(api, site), 30, "the controller to raise an error ticket")
        with api.conn.cursor() as cur:
            errors = cur.execute("SELECT payload FROM tickets WHERE metaservice = 'botfleet' AND ticket_type = 'error' "
                                 "AND (payload->>'ticket_id')::bigint = %s", (site,)).fetchall()
        assert len(errors) == 1 and "3 holds" in errors[0]["payload"]["reason"]
        assert ticket(api, site)["waiting_for"] is not None
    assert gen.next_ticket() is None
    if failure == "error_ticket":  # closing the error ticket is the operators' word to try again
        error_id = ticket(api, site)["waiting_for"]
        with api.client() as client:
            assert client.post(f"/tickets/{error_id}/close", json={"reason": "disk replaced"}).status_code == 200
        wait_until(lambda: ticket(api, site)["waiting_for"] is None, 30, "the site to be woken")
        assert gen.next_ticket()["id"] == site


SHORT_STALL_S = 3  # stall timers run on real time: a short one, so that a test can wait one out


@pytest.fixture
def short_stall(tmp_path, db_url, conn, processes):
    """gen/site with a stall_timeout of SHORT_STALL_S (failure state 3); the controller not started."""
    server = serve_api(tmp_path, db_url, conn, processes, types={"gen/site": GEN_TYPE},
                       bots={"gen-site-1-generating": EXTERNAL.replace(f"{STALL_S}s", f"{SHORT_STALL_S}s")
                             + "failure_state: 3\n"})
    server.tokens["work"] = create_token(conn, "generators", "work")
    server.db_url, server.processes, server.conn = db_url, processes, conn
    return server


def hold_ends_at(api, ticket_id):
    return api.conn.execute("SELECT lease_expires_at FROM tickets WHERE id = %s", (ticket_id,)).fetchone()[
        "lease_expires_at"]


def hold_has_ended(api, ticket_id) -> bool:
    """By the database's real clock, which a shift of business time does not move."""
    return api.conn.execute("SELECT lease_expires_at <= statement_timestamp() AS ended FROM tickets WHERE id = %s",
                            (ticket_id,)).fetchone()["ended"]


def test_a_silent_worker_loses_its_site_after_stall_timeout_and_its_later_messages_answer_false(short_stall):
    api = short_stall
    site = new_site(api, site="foo")
    silent = worker(api, "silent")
    assert silent.next_ticket()["id"] == site
    assert silent.progress(site, "GENERATION_START")
    first_end = hold_ends_at(api, site)
    assert silent.progress(site, "GENERATION_END")  # a recorded message renews the hold
    renewed_end = hold_ends_at(api, site)
    assert renewed_end > first_end
    assert silent.progress(site, "GENERATION_START") is False  # a repeat does not
    assert hold_ends_at(api, site) == renewed_end
    shift(api.conn, 3600)  # business time (within the lifetime): the hold's stall timer is real time
    assert not hold_has_ended(api, site)
    wait_until(lambda: hold_has_ended(api, site), SHORT_STALL_S + 10, "the hold's stall_timeout to pass")
    # Stalled, and not yet taken back: another worker does not get it past the controller's bookkeeping.
    assert worker(api, "other").next_ticket() is None
    api.processes.start("gen-site-1-generating", api.config_dir, api.db_url)  # the controller
    wait_until(lambda: "stalled" in kinds(api, site), 30, "the controller to take the site back")
    stalled = next(e for e in events(api, site) if e["kind"] == "stalled")
    assert stalled["actor"] == "gen-site-1-generating" and stalled["detail"]["worker"] == "silent"
    assert stalled["detail"]["attempt"] == 1
    assert set(stalled["detail"]["progress"]) == {"GENERATION_START", "GENERATION_END"}
    assert silent.progress(site, "GENERATION_END") is False
    assert refusal(lambda: silent.finish(site)).code == "not_held"
    assert 'botfleet_worker_tickets_stalled_total{metaservice="gen",state="1",ticket_type="site"} 1.0' in \
        scrape_text(api.db_url)
    assert worker(api, "other").next_ticket()["id"] == site  # queued again


def test_a_shift_of_business_time_does_not_stall_a_hold(api):
    """A worker's stall timer is liveness: a day of shifted business time takes nothing back."""
    api.processes.start("gen-site-1-generating", api.config_dir, api.db_url)
    site = new_site(api, site="foo")
    gen = worker(api)
    assert gen.next_ticket()["id"] == site
    shift(api.conn, 3600)  # wakes every bot's timers, the controller's too
    stays_true(lambda: "stalled" not in kinds(api, site), 3, "the hold to stay with its worker")
    assert gen.progress(site, "GENERATION_START") is True  # still held
    assert gen.finish(site)["state_name"] == "generated"


def test_the_controller_wakes_for_a_stalled_hold_by_its_own_timer_not_a_sweep(tmp_path, db_url, conn, processes):
    api = serve_api(tmp_path, db_url, conn, processes, types={"gen/site": GEN_TYPE},
                    bots={"gen-site-1-generating": "worker: external\nstall_timeout: 2s\nsweep_interval: 1h\n"})
    api.tokens["work"] = create_token(conn, "generators", "work")
    processes.start("gen-site-1-generating", api.config_dir, db_url)
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM bot_processes WHERE bot_name = 'gen-site-1-generating'"
                                    ).fetchone()["n"] == 1, 30, "the controller to register")
    site = new_site(api, site="foo")
    assert worker(api, "gen-1").next_ticket()["id"] == site
    wait_until(lambda: "stalled" in kinds(api, site), 20, "the controller's timer to take the site back")


def test_two_abandons_and_a_stall_fail_the_site(short_stall):
    api = short_stall
    api.processes.start("gen-site-1-generating", api.config_dir, api.db_url)
    site = new_site(api, site="foo")
    gen = worker(api)
    gen.next_ticket()
    gen.next_ticket()
    gen.next_ticket()  # two abandoned holds, and a third that goes silent
    wait_until(lambda: ticket(api, site)["state_name"] == "failed", 30, "the controller to fail the site")
    assert [k for k in kinds(api, site) if k in ("abandoned", "stalled")] == ["abandoned", "abandoned", "stalled"]


def test_concurrent_asks_hand_each_ticket_to_one_worker_only(api):
    sites = sorted(new_site(api, site=f"s{i}") for i in range(5))
    with ThreadPoolExecutor(20) as pool:
        got = list(pool.map(lambda i: worker(api, f"gen-{i}").next_ticket(), range(20)))
    handed = sorted(t["id"] for t in got if t is not None)
    assert handed == sites and got.count(None) == 15
    assert all(kinds(api, s).count("handed_out") == 1 for s in sites)


def test_a_person_acting_on_a_held_ticket_takes_it_back_from_the_worker(api):
    site = new_site(api, site="foo")
    gen = worker(api)
    gen.next_ticket()
    gen.progress(site, "GENERATION_START")
    with api.client() as client:
        response = client.post(f"/tickets/{site}/close", json={"reason": "the site was retired"})
    assert response.status_code == 200, response.text
    released = next(e for e in events(api, site) if e["kind"] == "released")
    assert released["detail"]["worker"] == "gen-1" and list(released["detail"]["progress"]) == ["GENERATION_START"]
    assert gen.progress(site, "GENERATION_END") is False
    assert refusal(lambda: gen.finish(site)).code == "not_held"


def test_nothing_is_handed_out_while_the_fleet_is_locked(api):
    site = new_site(api, site="foo")
    with api.client() as client:
        assert client.put("/lock", json={"reason": "upgrade"}).status_code == 200
        assert worker(api).next_ticket() is None
        assert client.delete("/lock").status_code == 200
    assert worker(api).next_ticket()["id"] == site


def test_a_second_process_under_a_worker_name_in_use_is_refused_and_writes_nothing(api):
    site = new_site(api, site="foo")
    first, second = worker(api, "gen-1", session="process-a"), worker(api, "gen-1", session="process-b")
    assert first.next_ticket()["id"] == site
    before = events(api, site)
    for call in (second.next_ticket, lambda: second.progress(site, "GENERATION_END"), lambda: second.finish(site)):
        error = refusal(call)
        assert (error.status, error.code) == (409, "worker_busy") and "gen-1" in error.message and "until" in error.message
    assert events(api, site) == before  # nothing was abandoned, recorded or finished
    assert first.progress(site, "GENERATION_END") is True
    first.finish(site)
    assert second.next_ticket() is None  # the name is free once its ticket is finished: 204, not 409


@pytest.mark.parametrize("path, status, code", [
    ("/workers/gen-1/next?type=gen/nope", 422, "unknown_type"),
    ("/workers/gen-1/next?type=testms/pipe", 422, "no_external_work"),
    ("/workers/gen-1/next?type=nonsense", 422, "invalid"),
    ("/workers/gen-1/next", 422, "invalid"),
    ("/workers/bad%20name/next?type=gen/site", 422, "invalid"),
    ("/workers/gen-1/tickets/0/progress", 422, "invalid"),
    ("/workers/gen-1/tickets/999999/finish", 404, "not_found"),
    ("no Worker-Session: /workers/gen-1/next?type=gen/site", 422, "invalid"),
])
def test_bad_worker_requests_get_a_json_error_naming_the_problem(api, path, status, code):
    headers = {} if path.startswith("no Worker-Session: ") else {"Worker-Session": "s1"}
    path = path.removeprefix("no Worker-Session: ")
    with api.client("work") as client:
        response = client.post(path, json={"message": "GENERATION_START"} if "progress" in path else None,
                               headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if not headers:
        assert error["field"] == "worker-session"


def test_workers_need_a_token_with_the_work_scope(api):
    new_site(api, site="foo")
    with api.client("reader") as client:
        response = client.post("/workers/gen-1/next", params={"type": "gen/site"}, headers={"Worker-Session": "s1"})
    assert response.status_code == 403 and "'work'" in response.json()["error"]["message"]
    with api.client(None) as client:
        assert client.post("/workers/gen-1/next", params={"type": "gen/site"},
                           headers={"Worker-Session": "s1"}).status_code == 401


def test_workers_and_their_holds_in_the_listing_and_the_metrics(api):
    site, other = new_site(api, site="foo"), new_site(api, site="bar")
    gen = worker(api)
    gen.next_ticket()
    gen.next_ticket()  # abandons foo, and takes it again
    worker(api, "gen-2").next_ticket()
    with api.client() as client:
        listed = {w["name"]: w for w in client.get("/workers").json()}
    assert (listed["gen-1"]["ticket_id"], listed["gen-2"]["ticket_id"]) == (site, other)
    assert listed["gen-1"]["stalls_at"] is not None
    metrics = scrape_text(api.db_url)
    labels = 'metaservice="gen",state="1",ticket_type="site"'
    assert f"botfleet_worker_tickets_held{{{labels}}} 2.0" in metrics
    assert f"botfleet_worker_tickets_abandoned_total{{{labels}}} 1.0" in metrics
    assert f"botfleet_worker_tickets_stalled_total{{{labels}}} 0.0" in metrics
    assert 'botfleet_worker_last_contact_timestamp_seconds{worker="gen-2"}' in metrics
    cli = subprocess.run([*BOTFLEET, "--config", str(api.config_dir), "worker", "list"], capture_output=True,
                         text=True, timeout=60, env=child_env(api.db_url), cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert f"gen/site ticket {site} (state 1)" in cli.stdout and "gen-2" in cli.stdout


@pytest.fixture
def enotify(tmp_path, db_url, conn, processes):
    """The API for the shipped enotify config, its queued state's bot running, and a work token."""
    shipped = ROOT / "config"
    types = {"enotify/site": (shipped / "ticket_types" / "enotify" / "site.yaml").read_text()}
    bots = {p.stem: p.read_text() for p in (shipped / "bots").glob("enotify-site-*.yaml")}
    api = serve_api(tmp_path, db_url, conn, processes, types=types, bots=bots)
    api.tokens["work"] = create_token(conn, "generators", "work")
    api.db_url, api.conn, api.lock_dir = db_url, conn, tmp_path / "locks"
    processes.start("enotify-site-1-queued", api.config_dir, db_url)
    return api


def queue_sites(api, *names) -> list[int]:
    with api.client() as client:
        ids = [client.post("/tickets", json={"metaservice": "enotify", "type": "site",
                                             "payload": {"site": name}}).json()["id"] for name in names]
    wait_until(lambda: all(ticket(api, i)["state"] == 2 for i in ids), 30, "the sites to be queued for generators")
    return ids


def generator(api, *args, background=False):
    command = [sys.executable, str(ROOT / "examples" / "enotify_generator.py"), "--url", api.base_url,
               "--token", api.tokens["work"], "--name", "gen-1", "--lock-dir", str(api.lock_dir), *args]
    if background:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_example_generator_renders_every_queued_site_of_the_shipped_enotify_type(enotify):
    ids = queue_sites(enotify, "foo", "bar")
    run = generator(enotify, "--part-seconds", "0", "--once")
    assert run.returncode == 0, run.stderr
    for i in ids:
        done = ticket(enotify, i)
        assert (done["state_name"], done["payload"]["generated_by"]) == ("generated", "gen-1")
        transition = next(e for e in events(enotify, i) if e["kind"] == "transitioned" and e["from_state"] == 2)
        assert len(transition["detail"]["progress"]) == 8  # every message of the seed's list, once


def test_a_crashed_generator_started_again_abandons_its_site_and_a_second_one_on_the_host_stops(enotify):
    [site] = queue_sites(enotify, "foo")
    crashing = generator(enotify, "--part-seconds", "30", background=True)
    try:
        wait_until(lambda: enotify.conn.execute("SELECT count(*) AS n FROM ticket_progress WHERE ticket_id = %s",
                                                (site,)).fetchone()["n"] >= 2, 30, "the generator to start the site")
        second = generator(enotify, "--once")
        assert second.returncode != 0 and "already runs on this host" in second.stderr
        assert kinds(enotify, site).count("handed_out") == 1  # the second one asked for nothing
    finally:
        crashing.kill()  # SIGKILL, mid-site
        crashing.wait(timeout=10)
    again = generator(enotify, "--part-seconds", "0", "--once")
    assert again.returncode == 0, again.stderr  # not refused as a second process: the same worker, again
    assert ticket(enotify, site)["state_name"] == "generated"
    abandoned = next(e for e in events(enotify, site) if e["kind"] == "abandoned")
    assert abandoned["detail"]["worker"] == "gen-1" and "GENERATION_START" in abandoned["detail"]["progress"]
