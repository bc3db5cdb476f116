"""The console's work and people pages (screen 5) over HTTP against the real API process and database: jobs
with their status and log, workers with the ticket each holds and until when, status model instances by how
they finished, people with their inboxes; 404 for what does not exist, the sign-in form without a cookie."""

import re
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape

from api.console.session import COOKIE
from api.console.work import OPEN_JOBS_READ, job_scan
from common.access.tokens import create_token
from common.config.models import FAILED, SUCCEEDED
from common.tickets.jobs import NOT_STARTED, RUNNING
from tests.conftest import PIPELINE_TYPE
from tests.test_api import serve_api
from tests.test_jobs import JOB_TYPE, new_job
from tests.test_status_models import BUILD_MODEL, create, set_status
from tests.test_workers import EXTERNAL, GEN_TYPE, new_site, worker

pytestmark = pytest.mark.processes


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    """The API with a job type, a state worked by external workers, the pipe (its group: testers, whose
    member bob is asked to accept each ticket) and the status model BUILD."""
    models = tmp_path / "config" / "status_models"
    models.mkdir(parents=True)
    (models / "build.yaml").write_text(BUILD_MODEL)
    server = serve_api(tmp_path, db_url, conn, processes,
                       types={"testms/job": JOB_TYPE, "gen/site": GEN_TYPE, "testms/pipe": PIPELINE_TYPE},
                       bots={"gen-site-1-generating": EXTERNAL + "failure_state: 3\n"},
                       fleet_extra="jobs:\n  type: testms/job\n")
    server.tokens["work"] = create_token(conn, "generators", "work")
    return server


def console(api, token="reader") -> httpx.Client:
    cookies = {COOKIE: api.tokens[token]} if token else None
    return httpx.Client(base_url=f"{api.base_url}/console", cookies=cookies, timeout=15)


def table(html: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert found, f"no table {table_id} in the page"
    return found.group(1)


def row(html: str, table_id: str, attribute: str) -> str:
    """The row of a table carrying `attribute` (as data-id="7"), tags and all."""
    found = re.search(rf"<tr [^>]*{re.escape(attribute)}.*?</tr>", table(html, table_id), re.S)
    assert found, f"no row {attribute} in table {table_id}"
    return found.group(0)


def test_jobs_show_their_status_filter_by_it_and_a_job_shows_its_log_and_ticket(api):
    with api.client() as client:
        done = new_job(client, name="nightly report", object_type="workorder", object_id="WO-7")
        client.patch(f"/job/{done['id']}", json={"status": "in_progress", "message": "picked up by w1"})
        client.patch(f"/job/{done['id']}", json={"status": "completed"})
        waiting = new_job(client, name="mail the team")
    with console(api) as page:
        listed = page.get("/jobs")
        assert listed.status_code == 200, listed.text
        line = row(listed.text, "jobs", f'data-id="{done["id"]}"')
        assert "nightly report" in line and SUCCEEDED in line and "workorder WO-7" in line and "<time " in line
        assert NOT_STARTED in row(listed.text, "jobs", f'data-id="{waiting["id"]}"')

        succeeded = table(page.get("/jobs", params={"status": SUCCEEDED}).text, "jobs")
        assert f'data-id="{done["id"]}"' in succeeded and f'data-id="{waiting["id"]}"' not in succeeded
        pending = table(page.get("/jobs", params={"status": NOT_STARTED}).text, "jobs")
        assert f'data-id="{waiting["id"]}"' in pending and f'data-id="{done["id"]}"' not in pending
        refused = page.get("/jobs", params={"status": "finished"})
        assert refused.status_code == 422 and "&#39;finished&#39;" in refused.text

        job = page.get(f"/jobs/{done['id']}")
        assert job.status_code == 200, job.text
        assert f'id="job-status">{SUCCEEDED}<' in job.text
        assert f'href="/console/tickets/{done["id"]}"' in job.text
        log = table(job.text, "log")
        assert "from 1 (pending) to 2 (working)" in log and "picked up by w1" in log
        assert "closed in 3 (done) (by api:ci)" in log and "<time datetime=" in log

        assert page.get("/jobs/999999999").status_code == 404
        assert page.get("/jobs/not-a-number").status_code == 404


def test_a_ticket_that_is_not_a_job_has_no_job_page(api):
    with api.client() as client:
        pipe = client.post("/tickets", json={"metaservice": "testms", "type": "pipe"}).json()
    with console(api) as page:
        response = page.get(f"/jobs/{pipe['id']}")
    assert response.status_code == 404 and "not a job" in response.text


def test_workers_show_the_ticket_each_holds_until_when_and_the_counts_of_their_states(api):
    site = new_site(api, url="https://example.org")
    holder = worker(api, name="gen-1")
    assert holder.next_ticket()["id"] == site
    idle = worker(api, name="gen-2")
    assert idle.next_ticket() is None
    with console(api) as page:
        html = page.get("/workers").text
    held = row(html, "workers", 'data-name="gen-1"')
    assert f'href="/console/tickets/{site}">ticket {site}<' in held and "gen/site 1 (generating)" in held
    assert held.count("<time ") == 3  # held until, last contact, first seen
    assert "nothing" in row(html, "workers", 'data-name="gen-2"')
    states = table(html, "worker-states")
    assert re.search(r"gen/site</a> 1 \(generating\)</td>\s*<td class=\"num\">1</td>", states)


def test_status_model_instances_are_counted_by_how_they_finished_and_listed_with_their_statuses(api, conn):
    with api.client() as client:
        completed = create(client, "BUILD")
        for status in ("FETCHED", "BUILT", "PUBLISHED"):
            set_status(client, completed, status)
        still_open = create(client, "BUILD")
        set_status(client, still_open, "CACHED")
        create(client, "BUILD", timeout_s=1)
    conn.execute("UPDATE status_instances SET deadline_at = created_at WHERE timeout_s = 1")  # overdue, not swept
    with console(api) as page:
        html = page.get("/status-models").text
        by_object = page.get("/status-models", params={"object": "BUILD"}).text
        unknown = page.get("/status-models", params={"object": "NOPE"})
    build = row(html, "status-models", 'data-object="BUILD"')
    counts = dict(re.findall(r'data-reason="(\w+)">(\d+)<', build))
    assert counts == {"completed": "1", "stopped": "0", "timed_out": "1", "open": "1"}
    finished = row(by_object, "status-instances", f'data-token="{completed}"')
    assert "completed" in finished and "FETCHED, BUILT, PUBLISHED" in finished
    assert "CACHED" in row(by_object, "status-instances", f'data-token="{still_open}"')
    assert unknown.status_code == 404 and "NOPE" in unknown.text


def test_people_show_their_groups_and_unread_count_and_a_person_their_inbox(api, conn):
    with api.client() as client:
        ticket = client.post("/tickets", json={"metaservice": "testms", "type": "pipe"}).json()
    text = conn.execute("SELECT text FROM notifications WHERE user_name = 'bob' AND ticket_id = %s",
                        (ticket["id"],)).fetchone()["text"]
    with console(api) as page:
        people = page.get("/people").text
        bob = page.get("/people/bob").text
        nobody = page.get("/people/nobody")
    bob_row = row(people, "people", 'data-name="bob"')
    assert "testers" in bob_row and 'data-unread="1"' in bob_row and "any time" in bob_row
    assert 'data-unread="0"' in row(people, "people", 'data-name="eve"')
    assert 'id="groups">testers<' in bob and 'id="unread">1<' in bob
    message = table(bob, "inbox")
    assert f'href="/console/tickets/{ticket["id"]}"' in message and str(escape(text)) in message
    assert "unread" in message and "<time " in message
    assert nobody.status_code == 404 and "nobody" in nobody.text


@pytest.mark.parametrize("path", ["/jobs", "/jobs/1", "/workers", "/status-models", "/people", "/people/bob"])
def test_without_a_cookie_every_page_asks_to_sign_in(api, path):
    with console(api, token=None) as page:
        response = page.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/signin?next=" + quote(f"/console{path}", safe="")


JOB_KINDS = [SimpleNamespace(metaservice="ms", name="job", states={
    1: SimpleNamespace(code=1, outcome=None), 2: SimpleNamespace(code=2, outcome=SUCCEEDED),
    3: SimpleNamespace(code=3, outcome=FAILED)})]


@pytest.mark.parametrize(("status", "scan"), [
    (None, (10, (("ms", "job", 1), ("ms", "job", 2), ("ms", "job", 3)))),
    (SUCCEEDED, (0, (("ms", "job", 2),))),
    # Closed by hand where no outcome is: failed.
    (FAILED, (0, (("ms", "job", 1), ("ms", "job", 3)))),
    (RUNNING, (OPEN_JOBS_READ, ())),
    (NOT_STARTED, (OPEN_JOBS_READ, ())),
])
def test_a_status_names_where_its_jobs_are_read(status, scan):
    found = job_scan(JOB_KINDS, status, 10)
    assert (found.open_jobs, found.closed_in) == scan
