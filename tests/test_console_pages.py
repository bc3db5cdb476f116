"""The console's fleet and type pages, its sign-in and its static files over HTTP, against the real API process
and a real PostgreSQL: what a person may change there (the lock, a type's settings), and every refusal."""

import httpx
import pytest

from api.console import STATIC
from api.console.session import COOKIE
from common.access.fleet_lock import read_lock
from common.fleet.stats_history import snapshot
from common.tickets.settings import type_settings
from tests.test_api import serve_api
from tests.test_stats_history import FIRST, Bot, next_minute

pytestmark = pytest.mark.processes
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def api(tmp_path, db_url, conn, processes):
    return serve_api(tmp_path, db_url, conn, processes)


def signed_in(api, token="all") -> httpx.Client:
    return httpx.Client(base_url=api.base_url + "/console", cookies={COOKIE: api.tokens[token]}, timeout=15)


def test_a_page_without_a_token_goes_to_sign_in_and_sign_in_never_leaves_the_console(api):
    with httpx.Client(base_url=api.base_url + "/console", timeout=15) as client:
        response = client.get("/types/testms/pipe")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/signin?next=%2Fconsole%2Ftypes%2Ftestms%2Fpipe"
        assert client.get("/live/fleet", headers={"HX-Request": "true"}).status_code == 401
        for elsewhere in ("https://evil.example/", "//evil.example/console/", "/docs"):
            response = client.post("/signin", data={"token": api.tokens["reader"], "next": elsewhere},
                                   headers=SAME_ORIGIN)
            assert (response.status_code, response.headers["location"]) == (303, "/console/"), elsewhere
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console/" in cookie
        response = client.post("/signin", data={"token": "made-up"}, headers=SAME_ORIGIN)
        assert response.status_code == 401 and "unknown or revoked" in response.text
        signed_out = client.post("/signout", headers=SAME_ORIGIN)
        assert signed_out.status_code == 303 and f'{COOKIE}=""' in signed_out.headers["set-cookie"]


def test_an_admin_changes_a_types_settings_and_a_reader_or_a_bad_value_changes_nothing(api, conn, synced):
    with signed_in(api) as admin:
        page = admin.get("/types/testms/pipe")
        assert page.status_code == 200 and 'id="graph"' in page.text and "/settings" in page.text
        response = admin.post("/types/testms/pipe/settings", data={"lifetime": "3h", "notification_frequency": ""},
                              headers={**SAME_ORIGIN, "HX-Request": "true"})
        assert response.status_code == 200 and "3h" in response.text
        [row] = type_settings(conn, synced, ("testms", "pipe"))
        assert (row["lifetime_override_s"], row["notification_frequency_override_s"]) == (10800, None)
        response = admin.post("/types/testms/pipe/settings", data={"lifetime": "soon"}, headers=SAME_ORIGIN)
        assert response.status_code == 422 and "--lifetime" in response.text
        assert admin.get("/types/testms/nope").status_code == 404
    with signed_in(api, "reader") as reader:
        page = reader.get("/types/testms/pipe")
        assert page.status_code == 200 and "/settings" not in page.text
        response = reader.post("/types/testms/pipe/settings", data={"lifetime": "1m"}, headers=SAME_ORIGIN)
        assert response.status_code == 403 and "admin" in response.text
    [row] = type_settings(conn, synced, ("testms", "pipe"))
    assert row["lifetime_override_s"] == 10800


def test_an_admin_locks_and_opens_the_fleet_from_the_fleet_page(api, conn):
    with signed_in(api) as admin:
        assert admin.post("/lock", data={"action": "lock", "reason": " "}, headers=SAME_ORIGIN).status_code == 422
        assert read_lock(conn).state == "open"
        response = admin.post("/lock", data={"action": "lock", "reason": "disk swap"}, headers=SAME_ORIGIN)
        assert response.status_code == 200 and "disk swap" in response.text
        lock = read_lock(conn)
        assert (lock.state, lock.reason, lock.set_by) == ("ops_only", "disk swap", "console:ci")
        assert "Fleet ops only" in admin.get("/").text
        assert admin.post("/lock", data={"action": "unlock"}, headers=SAME_ORIGIN).status_code == 200
        assert read_lock(conn).state == "open"
        # Without Sec-Fetch-Site, an Origin of another host is refused too.
        response = admin.post("/lock", data={"action": "lock", "reason": "x"}, headers={"Origin": "http://evil.example"})
        assert response.status_code == 403
        assert read_lock(conn).state == "open"


def test_static_files_are_the_vendored_ones_and_cached_for_good(api):
    with signed_in(api) as client:
        for name in STATIC:
            response = client.get(f"/static/{name}")
            assert response.status_code == 200 and "immutable" in response.headers["cache-control"], name
        assert "htmx" in client.get("/static/htmx-2.0.11.min.js").text
        assert client.get("/static/../app.py").status_code == 404
        assert client.get("/static/nothing.js").status_code == 404


def test_an_open_live_page_does_not_hold_up_the_apis_stop(api):
    """uvicorn waits for open requests before it stops; a live stream never ends by itself, so it is ended."""
    with signed_in(api, "reader") as client, client.stream("GET", "/live/types/testms/pipe") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: graph"
        api.process.terminate()
        api.process.wait(timeout=10)  # not the graceful shutdown's timeout, which is none here: for ever
        assert "Application shutdown complete" in api.process.log_path.read_text()
        assert all(True for _ in lines)  # the stream ended with the process


def test_the_fleet_page_shows_restarts_by_reason_and_each_bots_last_minutes(api, conn, synced):
    first = Bot(conn, FIRST)
    next_minute(conn)
    first.add(10, [0.003] * 10)
    snapshot(conn)
    next_minute(conn)
    first.add(30, [0.04] * 30)
    snapshot(conn)
    conn.execute("INSERT INTO watchdog_restart_totals (bot, reason, restarts) VALUES (%s, 'hung', 2), (%s, 'crash', 1)",
                 (FIRST, FIRST))
    with signed_in(api, "reader") as client:
        page = client.get("/")
    assert page.status_code == 200
    row = page.text[page.text.index(f'data-bot="{FIRST}"'):]
    row = row[:row.index("</tr>")]
    assert 'title="restarts: hung">hung 2' in row and 'title="restarts: crash">crash 1' in row
    assert f"{FIRST}: tickets done per minute, last 30 min (now 30)" in row
    assert 'class="spark"' in row and ("<polyline" in row or "<circle" in row)
    assert "35 ms" in row  # the last minute's hop p50: 30 hops in (20 ms, 50 ms], half way
    other = page.text[page.text.index('data-bot="testms-pipe-2-second"'):]
    assert "no data yet" in other[:other.index("</tr>")]
