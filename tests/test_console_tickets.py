"""The console's tickets (issue 21, screens 3 and 4) over HTTP against the real API process: the list's filters,
keyset pages, payload search and counts; bulk actions on everything a filter matches, confirmed by their count;
a ticket's page with its history, family, notifications and webhooks, and its actions."""

import re

import httpx
import pytest

from api.console.session import COOKIE
from common.config.load import load
from common.tickets.create import create_ticket
from common.tickets.manual import patch_ticket
from common.tickets.search import TicketFilter, count_tickets, like_pattern
from tests.test_api import serve_api

pytestmark = pytest.mark.processes

HOOK = "http://127.0.0.1:9/hooks/"
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def console(tmp_path, db_url, conn, processes):
    api = serve_api(tmp_path, db_url, conn, processes,
                    fleet_extra=f"webhooks:\n  allow: ['{HOOK}']\n")
    api.config = load(api.config_dir)
    return api


def browser(console, token="all"):
    client = httpx.Client(base_url=console.base_url + "/console", timeout=30, headers=SAME_SITE)
    client.cookies.set(COOKIE, console.tokens[token])
    return client


def make(conn, console, payload=None, *, state=None, **fields):
    ticket_id = create_ticket(conn, console.config, "testms", "pipe", payload or {}, **fields)
    if state is not None and state != 1:
        for step in range(2, state + 1):
            patch_ticket(conn, console.config, ticket_id, state=step, actor="test")
    return ticket_id


def ids_of(html):
    return [int(i) for i in re.findall(r'<tr data-ticket-id="(\d+)"', html)]


def count_of(html):
    return re.search(r'<span id="ticket-count"[^>]*>([^<]*)</span>', html).group(1)


def events_of(conn, ticket_id):
    return conn.execute("SELECT kind, actor, detail FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                        [ticket_id]).fetchall()


def test_each_filter_narrows_the_list(console, conn):
    a = make(conn, console, {"n": 1}, creator="bob")
    b = make(conn, console, {"n": 2}, creator="eve", state=2)
    c = make(conn, console, {"n": 3}, creator="eve")
    conn.execute("UPDATE tickets SET created_at = '2026-01-15T12:00Z', assigned_user = 'bob' WHERE id = %s", [a])
    conn.execute("UPDATE tickets SET group_role = NULL WHERE id = %s", [c])
    with browser(console) as client:
        page = client.get("/tickets")
        assert page.status_code == 200 and ids_of(page.text) == [c, b, a]
        assert f'href="/console/tickets/{a}"' in page.text and count_of(page.text) == "3 tickets"
        for query, expected in [
            ("metaservice=testms&type=pipe&state=2&status=open", [b]),
            ("state=1", [c, a]),
            ("creator=eve", [c, b]),
            ("assignee=bob", [a]),
            ("group=testers", [b, a]),
            ("created_from=2026-01-01&created_to=2026-01-31", [a]),
            ("created_to=2026-01-15T11:00", []),
            ("status=closed", []),
        ]:
            assert ids_of(client.get(f"/tickets?{query}").text) == expected, query
        conn.execute("UPDATE tickets SET closed_at = now() WHERE id = %s", [b])
        assert ids_of(client.get("/tickets?status=closed").text) == [b]
        assert ids_of(client.get("/tickets?status=open").text) == [c, a]
        assert ids_of(client.get("/tickets?status=all").text) == [c, b, a]
        # htmx asks for the rows alone
        part = client.get("/tickets?creator=eve", headers={"HX-Request": "true"})
        assert "<html" not in part.text and 'id="tickets"' in part.text and ids_of(part.text) == [c]


def test_pages_follow_ids_and_payload_search_finds_json_and_text(console, conn):
    made = [make(conn, console, {"n": n, "name": f"order_{n}%" if n % 2 else f"note {n}"}) for n in range(55)]
    with browser(console) as client:
        seen, url, pages = [], "/tickets?status=open", 0
        while url:
            page = client.get(url)
            seen, pages = seen + ids_of(page.text), pages + 1
            found = re.search(r'id="next-page" href="/console(/tickets\?[^"]*)"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else None
            if pages == 1:
                make(conn, console)  # a ticket created meanwhile shifts no page
        assert pages == 2 and seen == made[::-1]
        assert ids_of(client.get(f"/tickets?before={made[3]}").text) == made[:3][::-1]
        assert ids_of(client.get('/tickets', params={"contains": '{"n": 4}'}).text) == [made[4]]
        assert ids_of(client.get('/tickets', params={"q": "ORDER_5%"}).text) == [made[5]]
        # % and _ are the person's text, not patterns: only the odd ones have a %
        assert ids_of(client.get('/tickets', params={"q": "%"}).text) == made[1::2][::-1]
        assert "searched tickets" in client.get('/tickets', params={"q": "note"}).text
    assert like_pattern("a_b%c\\") == "%a\\_b\\%c\\\\%"


def test_a_payload_search_reads_a_window_of_ids_and_goes_on_below_it(conn, console):
    from common.tickets.search import ticket_page
    made = [make(conn, console, {"n": n}) for n in range(6)]
    first = ticket_page(conn, TicketFilter(contains={"n": 0}), limit=10, window=3)
    assert first.tickets == [] and (first.searched_from, first.searched_to) == (made[3], made[5])
    assert first.next_before == made[3]
    second = ticket_page(conn, TicketFilter(contains={"n": 0}), before=first.next_before, limit=10, window=3)
    assert [t.id for t in second.tickets] == [made[0]]


def test_bad_input_is_a_4xx_naming_the_field(console):
    with browser(console) as client:
        for query, field in [("contains={bad", "contains"), ("contains=[1]", "contains"),
                             ("created_from=yesterday", "created_from"), ("created_to=2026-13-01", "created_to"),
                             ("metaservice=testms&type=nope", "type"), ("metaservice=nope", "metaservice"),
                             ("metaservice=testms&type=pipe&state=9", "state"), ("state=x", "state"),
                             ("status=maybe", "status"), ("before=-1", "before")]:
            page = client.get(f"/tickets?{query}")
            assert 400 <= page.status_code < 500 and f"Refused: {field}:" in page.text, (query, page.text)
            part = client.get(f"/tickets?{query}", headers={"HX-Request": "true"})
            assert part.status_code == page.status_code and part.headers["HX-Retarget"] == "#flash"


def test_a_big_count_is_an_estimate_and_says_so(console, conn):
    conn.execute("""INSERT INTO tickets (metaservice, ticket_type, state, payload)
                    SELECT 'testms', 'pipe', 1, jsonb_build_object('n', g) FROM generate_series(1, 3000) g""")
    conn.execute("ANALYZE tickets")
    everything = TicketFilter(status="all")
    assert count_tickets(conn, everything).exact and count_tickets(conn, everything).n == 3000
    estimated = count_tickets(conn, everything, cap=1000)
    assert not estimated.exact and estimated.over_cap and 2500 < estimated.n < 3500
    assert not count_tickets(conn, everything, try_below=100).exact
    with browser(console) as client:
        assert count_of(client.get("/tickets").text) == "3,000 tickets"


def test_bulk_close_closes_exactly_the_matching_tickets_each_with_its_event(console, conn):
    matching = [make(conn, console, {"k": "x"}, creator="eve") for _ in range(5)]
    other = make(conn, console, {"k": "x"}, creator="bob")
    closed = make(conn, console, creator="eve")
    conn.execute("UPDATE tickets SET closed_at = now() WHERE id = %s", [closed])
    form = {"creator": "eve", "status": "all", "action": "close", "reason": "withdrawn"}
    with browser(console) as client:
        page = client.get("/tickets?creator=eve&status=all")
        assert 'id="bulk"' in page.text and 'name="reason"' in page.text and 'id="bulk-confirm"' in page.text
        preview = client.post("/tickets/bulk/preview", data=form)
        assert preview.status_code == 200 and "Close 5 open tickets" in preview.text
        assert 'id="bulk-confirm-button"' in preview.text
        late = make(conn, console, creator="eve")  # after the preview: not acted on
        max_id = int(re.search(r'name="max_id" value="(\d+)"', preview.text).group(1))
        done = client.post("/tickets/bulk", data={**form, "confirm_count": "5", "max_id": str(max_id)})
        assert done.status_code == 200 and 'id="bulk-result"' in done.text and "5 tickets closed" in done.text
    rows = {r["id"]: r["closed_at"] for r in conn.execute("SELECT id, closed_at FROM tickets").fetchall()}
    assert all(rows[i] is not None for i in matching) and rows[other] is None and rows[late] is None
    for ticket_id in matching:
        last = events_of(conn, ticket_id)[-1]
        assert (last["kind"], last["actor"], last["detail"]) == ("closed", "console:ci", {"reason": "withdrawn"})
    assert [e["kind"] for e in events_of(conn, closed)] == ["created", "reminder"]


def test_bulk_refuses_more_than_confirmed_and_a_move_the_graph_forbids(console, conn):
    first = [make(conn, console) for _ in range(3)]
    with browser(console) as client:
        send = {"metaservice": "testms", "type": "pipe", "state": "1", "status": "open", "action": "send"}
        refused = client.post("/tickets/bulk/preview", data={**send, "to_state": "3"})
        assert refused.status_code == 422 and "to_state:" in refused.text and "allowed: 2" in refused.text
        assert client.post("/tickets/bulk/preview", data={"action": "send", "to_state": "2"}).status_code == 422
        ok = client.post("/tickets/bulk/preview", data={**send, "to_state": "2"})
        assert "Send 3 open tickets to state 2 second" in ok.text
        max_id = int(re.search(r'name="max_id" value="(\d+)"', ok.text).group(1))
        too_many = client.post("/tickets/bulk", data={**send, "to_state": "2", "confirm_count": "2", "max_id": str(max_id)})
        assert too_many.status_code == 409 and "confirm_count:" in too_many.text
        sent = client.post("/tickets/bulk", data={**send, "to_state": "2", "confirm_count": "3", "max_id": str(max_id)})
        assert "3 tickets sent to state 2" in sent.text
    assert [r["state"] for r in conn.execute("SELECT state FROM tickets WHERE id = ANY(%s)", [first]).fetchall()] == [2] * 3
    assert all(events_of(conn, i)[-1]["actor"] == "console:ci" for i in first)


def test_a_bulk_action_skips_a_ticket_a_bot_holds_and_says_so(console, conn):
    free, held = make(conn, console, creator="eve"), make(conn, console, creator="eve")
    conn.execute("UPDATE tickets SET lease_owner = 'some-bot', lease_expires_at = now() + interval '1 hour' "
                 "WHERE id = %s", [held])
    form = {"creator": "eve", "action": "close", "reason": "r", "confirm_count": "2", "max_id": str(held)}
    with browser(console) as client:
        done = client.post("/tickets/bulk", data=form)
    assert "1 tickets closed" in done.text and "1 left as they were" in done.text
    rows = conn.execute("SELECT id, closed_at IS NOT NULL AS closed FROM tickets").fetchall()
    assert {r["id"]: r["closed"] for r in rows} == {free: True, held: False}


def test_a_read_token_gets_no_bulk_form_nor_actions_and_is_refused(console, conn):
    ticket_id = make(conn, console)
    with browser(console, "reader") as client:
        assert 'id="bulk"' not in client.get("/tickets").text
        assert 'id="actions"' not in client.get(f"/tickets/{ticket_id}").text
        form = {"action": "close", "reason": "no", "confirm_count": "1", "max_id": str(ticket_id)}
        assert client.post("/tickets/bulk/preview", data=form).status_code == 403
        assert client.post("/tickets/bulk", data=form).status_code == 403
        assert client.post(f"/tickets/{ticket_id}/close", data={"reason": "no"}).status_code == 403
    with browser(console) as client:
        cross = client.post(f"/tickets/{ticket_id}/close", data={"reason": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
    assert conn.execute("SELECT closed_at FROM tickets WHERE id = %s", [ticket_id]).fetchone()["closed_at"] is None


def test_a_ticket_shows_its_history_family_notifications_webhooks_and_its_actions_work(console, conn):
    parent = make(conn, console, {"order": 7, "tags": ["a"]}, callback_url=HOOK + "t")
    child = create_ticket(conn, console.config, "testms", "pipe", {}, parent_id=parent)
    patch_ticket(conn, console.config, parent, state=2, actor="test")
    conn.execute("""INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
                    VALUES (%s, 99, 'error', 2, 2, 'bot-x', '{"error": "boom: it broke", "attempt": 1}')""", [parent])
    with browser(console) as client:
        assert client.get("/tickets/999999").status_code == 404
        page = client.get(f"/tickets/{parent}")
        assert page.status_code == 200
        assert "&#34;order&#34;: 7" in page.text or '"order": 7' in page.text
        assert "boom: it broke" in page.text and "1 first → 2 second" in page.text and "bot-x" in page.text
        assert f'href="/console/tickets/{child}"' in page.text
        assert 'id="notifications"' in page.text and "bob" in page.text  # the acceptance round to its group
        assert 'id="webhooks"' in page.text and HOOK + "t" in page.text
        child_page = client.get(f"/tickets/{child}").text
        assert f'href="/console/tickets/{parent}"' in child_page
        # its actions: the graph's next states only, and each one works
        assert '<option value="3">3 third</option>' in page.text and '<option value="4">' not in page.text
        assert client.post(f"/tickets/{parent}/send", data={"to_state": "4"}).status_code == 409
        sent = client.post(f"/tickets/{parent}/send", data={"to_state": "3"}, headers={"HX-Request": "true"})
        assert sent.status_code == 200 and "<html" not in sent.text and "3 third" in sent.text
        assert client.post(f"/tickets/{parent}/assign", data={"user": "bob"}).status_code == 200
        # The page showed the payload before a bot added a key; the person's edit leaves the bot's key be.
        shown = '{"order": 7, "tags": ["a"]}'
        patch_ticket(conn, console.config, parent, payload={"seen_by_bot": True}, actor="bot-x")
        edited = client.post(f"/tickets/{parent}/payload", data={"payload": '{"order": 8}', "original": shown})
        assert edited.status_code == 200 and "bob" in edited.text
        assert client.post(f"/tickets/{parent}/payload", data={"payload": "{nope", "original": shown}).status_code == 422
        assert client.post(f"/tickets/{parent}/payload", data={"payload": "{}", "original": "[]"}).status_code == 422
        assert client.post(f"/tickets/{parent}/close", data={"reason": ""}).status_code == 422
        closed = client.post(f"/tickets/{parent}/close", data={"reason": "done by hand"})
        assert closed.status_code == 200 and 'id="ticket-status">closed' in closed.text
    row = conn.execute("SELECT state, payload, assigned_user, closed_at FROM tickets WHERE id = %s", [parent]).fetchone()
    assert (row["state"], row["assigned_user"]) == (3, "bob") and row["closed_at"]
    assert row["payload"] == {"order": 8, "seen_by_bot": True}
    kinds = [(e["kind"], e["actor"]) for e in events_of(conn, parent)][-5:]
    assert kinds == [("transitioned", "console:ci"), ("assigned", "console:ci"), ("patched", "bot-x"),
                     ("patched", "console:ci"),
                     ("closed", "console:ci")]


def test_accepting_acts_as_the_tokens_user_and_for_another_needs_admin(console, conn):
    from common.access.tokens import create_token
    ticket_id = make(conn, console)
    console.tokens["bob"] = create_token(conn, "bobs", "read,update", user="bob")
    with browser(console, "bob") as client:
        page = client.get(f"/tickets/{ticket_id}")
        assert "Accept as bob" in page.text
        assert client.post(f"/tickets/{ticket_id}/assign", data={"user": "eve"}).status_code == 403
        accepted = client.post(f"/tickets/{ticket_id}/accept")
        assert accepted.status_code == 200, accepted.text
    assert events_of(conn, ticket_id)[-1]["kind"] == "accepted"
    assert conn.execute("SELECT assigned_user FROM tickets WHERE id = %s", [ticket_id]).fetchone()["assigned_user"] == "bob"
    # An admin bound to no user accepts for a member of the group, and not for someone outside it.
    other = make(conn, console)
    with browser(console) as admin:
        assert "Accept for" in admin.get(f"/tickets/{other}").text
        assert admin.post(f"/tickets/{other}/accept", data={"user": "eve"}).status_code == 409
        assert admin.post(f"/tickets/{other}/accept", data={"user": "bob"}).status_code == 200
    assert conn.execute("SELECT assigned_user FROM tickets WHERE id = %s", [other]).fetchone()["assigned_user"] == "bob"


def test_the_list_says_when_its_count_is_an_estimate():
    from api.console.render import templates
    from common.tickets.search import Count, Page

    def shown(count):
        html = templates.get_template("tickets_rows.html").render(
            root="/console", who=None, config=None, found=Page([], None), count=count, fields={}, before=None,
            next_url=None, kind=None, ticket_filter=TicketFilter())
        return count_of(html)
    assert shown(Count(1234, exact=True)) == "1,234 tickets"
    assert shown(Count(1_000_000, exact=False)) == "about 1,000,000 tickets (estimate)"
    assert shown(Count(35_000, exact=False, over_cap=True)) == "more than 10,000: about 35,000 tickets (estimate)"
