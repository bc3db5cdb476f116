"""The web console in a real browser (Debian's chromium, driven by Playwright) against the real API process
and a real PostgreSQL: sign-in, live counts on a type's graph, what a read-only token may do, refusals of
forged and cross-site changes, and the pages under a reverse proxy's sub-path. Each test keeps a screenshot of
what it checked under its output folder."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from api.console.session import COOKIE
from common.access.fleet_lock import read_lock
from common.access.tokens import create_token
from common.store.connect import connect
from common.tickets.create import create_ticket
from tests.browser import reverse_proxy, screenshot, sign_in
from tests.conftest import free_port
from tests.test_api import new_ticket, serve_api

pytestmark = [pytest.mark.processes, pytest.mark.browser]

# The pipe type of tests/conftest.py, served by the API alone: no bot runs, so tickets stay where they are made.

@pytest.fixture
def console(tmp_path, db_url, conn, processes):
    api = serve_api(tmp_path, db_url, conn, processes)
    api.console_url = api.base_url + "/console"
    return api


def open_count(page, state: int) -> int:
    return int(page.text_content(f'#graph .count-open[data-state="{state}"]'))


def test_sign_in_takes_a_live_token_and_refuses_a_bad_one(console, browser_page, tmp_path):
    page = browser_page
    page.goto(console.console_url + "/types")
    page.wait_for_url("**/console/signin?next=*")
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    assert "unknown or revoked" in page.text_content("[role=alert]")
    screenshot(page, tmp_path, "signin-refused")
    page.fill("input[name=token]", console.tokens["reader"])
    page.click("button[type=submit]")
    page.wait_for_url("**/console/types")  # back where the person was going
    assert page.is_visible("text=testms/pipe")
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    screenshot(page, tmp_path, "signed-in")


def test_a_ticket_created_over_the_api_changes_its_states_count_on_the_graph_without_a_reload(
        console, browser_page, tmp_path):
    page = browser_page
    sign_in(page, console.console_url, console.tokens["reader"])
    page.goto(console.console_url + "/types/testms/pipe")
    before = open_count(page, 1)
    page.evaluate("window.notReloaded = true")
    with console.client() as client:
        created = new_ticket(client)
    page.wait_for_function(f"""() => Number(document.querySelector('#graph .count-open[data-state="1"]')
                                            .textContent) === {before + 1}""")
    assert page.evaluate("window.notReloaded === true"), "the page was loaded again"
    screenshot(page, tmp_path, "graph-live-count")
    # The state's box leads to its tickets, among them the new one.
    page.click('#graph #state-1 a')
    page.wait_for_url("**/console/tickets?*state=1*")
    assert page.is_visible(f'a[href$="/tickets/{created["id"]}"]')
    screenshot(page, tmp_path, "tickets-of-state")


def test_a_read_token_sees_no_action_and_a_forged_change_is_refused(console, browser_page, tmp_path, conn):
    page = browser_page
    sign_in(page, console.console_url, console.tokens["reader"])
    assert page.is_visible("text=read only")
    assert page.locator("form[hx-post$='/lock']").count() == 0
    page.goto(console.console_url + "/types/testms/pipe")
    assert page.locator("form[hx-post$='/settings']").count() == 0
    screenshot(page, tmp_path, "read-only")
    # The same POST the admin's button makes, sent from the console's own page with the reader's cookie.
    status = page.evaluate(f"""async () => (await fetch("{console.console_url}/lock", {{
        method: "POST", headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
        body: "action=lock&reason=forged"}})).status""")
    assert status == 403
    assert read_lock(conn).state == "open"


class _Forger(BaseHTTPRequestHandler):
    """Another site, whose page posts a form to the console as soon as it loads."""

    target = ""

    def do_GET(self):
        body = (f'<form id="f" method="post" action="{self.target}"><input name="action" value="lock">'
                f'<input name="reason" value="cross-site"></form><script>f.submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_cross_site_post_is_refused(console, browser_page, tmp_path, conn):
    page = browser_page
    sign_in(page, console.console_url, console.tokens["all"])  # an admin: only the origin is wrong
    _Forger.target = console.console_url + "/lock"
    other = ThreadingHTTPServer(("127.0.0.1", free_port()), _Forger)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        # localhost is another site than 127.0.0.1: the browser keeps the Strict cookie to itself.
        page.goto(f"http://localhost:{other.server_port}/")
        page.wait_for_url(console.console_url + "/lock")
        assert page.is_visible("text=sign in first")
        screenshot(page, tmp_path, "cross-site-refused")
    finally:
        other.shutdown()
    assert read_lock(conn).state == "open"
    # A browser that does send the cookie still says where the request came from, and that is refused too.
    response = httpx.post(console.console_url + "/lock", data={"action": "lock", "reason": "cross-site"},
                          cookies={COOKIE: console.tokens["all"]}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "cross-site request" in response.text
    assert read_lock(conn).state == "open"
    # The same change from the console's own page is made.
    page.goto(console.console_url + "/")
    page.fill("#lock input[name=reason]", "maintenance")
    page.click("#lock button[type=submit]")
    page.wait_for_selector("text=Fleet ops only")
    assert read_lock(conn).state == "ops_only"


def test_the_console_works_under_a_sub_path_behind_a_reverse_proxy(tmp_path, db_url, conn, processes, browser_page):
    api = serve_api(tmp_path, db_url, conn, processes, api_extra="  root_path: /ops/botfleet\n")
    with reverse_proxy("/ops/botfleet", int(api.base_url.rsplit(":", 1)[1])) as proxied:
        check_the_console_under(proxied + "/console", api, browser_page, tmp_path)


def check_the_console_under(console_url, api, page, tmp_path):
    sign_in(page, console_url, api.tokens["reader"])
    page.click("header nav >> text=Types")
    page.wait_for_url(console_url + "/types")
    page.click("text=testms/pipe")
    page.wait_for_url(console_url + "/types/testms/pipe")
    before = open_count(page, 1)
    with api.client() as client:
        new_ticket(client)
    page.wait_for_function(f"""() => Number(document.querySelector('#graph .count-open[data-state="1"]')
                                            .textContent) === {before + 1}""")
    links = page.eval_on_selector_all("a[href^='/']", "els => els.map(e => e.getAttribute('href'))")
    assert links and all(link.startswith("/ops/botfleet/") for link in links), links
    screenshot(page, tmp_path, "sub-path")


@pytest.mark.process_faults  # the whole shipped fleet under supervisord: with the other process tests
def test_the_fleet_page_lists_every_bot_of_the_shipped_fleet_and_a_types_graph_counts_its_tickets(
        shipped, browser_page, tmp_path):
    config = shipped.config
    with connect(shipped.db_url, autocommit=True) as conn:
        token = create_token(conn, "console-admin", "read,submit,update,admin")
        for n in range(3):  # something to count on the pictures
            create_ticket(conn, config, "helpdesk", "incident", {"summary": f"printer {n} on fire"},
                          creator="carol")
    console_url = f"http://{config.api_listen}/console"
    page = browser_page
    sign_in(page, console_url, token)
    bots = set(config.bots)
    page.wait_for_function(f"""() => {{
        const rows = [...document.querySelectorAll('#bots tr[data-bot]')];
        return rows.filter(r => r.querySelector('.health').textContent.trim() === 'healthy').length >= {len(bots)};
    }}""")
    shown = set(page.eval_on_selector_all("#bots tr[data-bot]", "rows => rows.map(r => r.dataset.bot)"))
    assert shown == bots
    assert "OK" in page.text_content("#verdict")
    assert page.locator(".watchdog").count() == 1
    states = page.eval_on_selector_all("#bots tr[data-bot] td.supervisord", "cells => cells.map(c => c.textContent)")
    assert set(states) == {"RUNNING"}, states
    screenshot(page, tmp_path, "console-fleet")
    page.goto(console_url + "/types/helpdesk/incident")
    incident = config.types[("helpdesk", "incident")]
    for code in incident.states:
        assert page.locator(f"#graph #state-{code}").count() == 1
    page.wait_for_function("""() => [...document.querySelectorAll('#graph .count-open')]
                                    .some(el => Number(el.textContent) > 0)""")
    screenshot(page, tmp_path, "console-type-graph")
    # The system's dark mode, followed without a setting of the console's own.
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(20, 23, 28)"
    screenshot(page, tmp_path, "console-type-graph-dark")



def test_a_bulk_close_of_a_filter_closes_exactly_the_matching_tickets(console, browser_page, tmp_path, conn):
    with console.client() as client:
        # More than a page would need to show: the bulk action is on everything the filter matches.
        matching = [new_ticket(client, payload={"site": "berlin", "n": n})["id"] for n in range(3)]
        matching.append(new_ticket(client, payload={"site": "berlin"}, group="testers")["id"])
        others = [new_ticket(client, payload={"site": "paris"})["id"], new_ticket(client)["id"]]
    page = browser_page
    sign_in(page, console.console_url, console.tokens["all"])
    page.goto(console.console_url + "/tickets")
    page.fill("#filters [name=contains]", '{"site": "berlin"}')
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/tickets?*contains=*")  # the filter is in the address, for a bookmark or a reload
    page.wait_for_function("document.querySelectorAll('#tickets tr[data-ticket-id]').length === 4")
    rows = page.eval_on_selector_all("#tickets tr[data-ticket-id]", "rs => rs.map(r => Number(r.dataset.ticketId))")
    assert set(rows) == set(matching)
    page.fill("#bulk [name=reason]", "site closed")
    page.click("#bulk-close")
    question = page.wait_for_selector("#bulk-question").text_content()
    assert "Close 4 open tickets" in question, question
    screenshot(page, tmp_path, "bulk-confirm")
    page.click("#bulk-confirm-button")
    result = page.wait_for_selector("#bulk-result").text_content()
    assert "4 tickets closed" in result, result
    screenshot(page, tmp_path, "bulk-result")
    closed = {row["id"] for row in conn.execute("SELECT id FROM tickets WHERE closed_at IS NOT NULL")}
    assert closed == set(matching) and not closed & set(others)
    events = conn.execute("SELECT ticket_id, actor, detail FROM ticket_events WHERE kind = 'closed'").fetchall()
    assert sorted(e["ticket_id"] for e in events) == sorted(matching)  # one event each
    assert {e["actor"] for e in events} == {"console:ci"}


def test_times_are_shown_in_the_browsers_time_zone_with_utc_on_hover(console, chromium, tmp_path):
    with console.client() as client:
        ticket = new_ticket(client)
    context = chromium.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        page = context.new_page()
        sign_in(page, console.console_url, console.tokens["reader"])
        page.goto(f"{console.console_url}/tickets/{ticket['id']}")
        created = page.wait_for_selector("time[data-local]")
        shown, utc = created.text_content(), created.get_attribute("title")
        assert "GMT+9" in shown and utc.endswith(" UTC"), (shown, utc)
        hour_utc = int(utc.split(" ")[1].split(":")[0])
        assert f"{(hour_utc + 9) % 24:02d}:" in shown, (shown, utc)
        screenshot(page, tmp_path, "ticket-in-tokyo")
    finally:
        context.close()
