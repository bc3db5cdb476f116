"""One clock: the database's (botfleet_now()), shifted for the whole fleet at once, so an hour runs in a second.

The bots under test are real processes; nothing in them is mocked: they read the shifted clock from
the database like any other time.
"""

import pytest

from common.config.load import load
from common.store import clock
from common.tickets.create import create_ticket
from common.tickets.read import get_events, get_ticket
from tests.conftest import wait_until, write_config

pytestmark = pytest.mark.processes

FIRST = "testms-pipe-1-first"


@pytest.fixture
def waiting_bot(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", bots={FIRST: "handler: tests.handlers:wait_an_hour_once\n"})
    cfg = load(folder)
    from common.store.sync import sync_config
    sync_config(conn, cfg)
    processes.start(FIRST, folder, db_url)
    return cfg


@pytest.mark.parametrize("how", ["wait", "wait_until_time"])
def test_a_wait_of_an_hour_ends_when_the_fleets_clock_is_shifted_by_an_hour(waiting_bot, conn, how):
    ticket_id = create_ticket(conn, waiting_bot, "testms", "pipe", {"until": how == "wait_until_time"})
    wait_until(lambda: any(e["kind"] == "waited" for e in get_events(conn, ticket_id)), 30, "the ticket to wait")
    waited = next(e for e in get_events(conn, ticket_id) if e["kind"] == "waited")
    due_in_s = conn.execute("SELECT extract(epoch FROM due_at - botfleet_now()) AS s FROM tickets WHERE id = %s",
                            (ticket_id,)).fetchone()["s"]
    assert 3500 < due_in_s <= 3600, waited
    clock.shift(conn, 3600)
    # The bot's sweep (1 s here) finds the wait over by the shifted clock, and the ticket moves on.
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the shifted clock to end the wait")
    moved = next(e for e in get_events(conn, ticket_id) if e["kind"] == "transitioned")
    assert (moved["at"] - waited["at"]).total_seconds() >= 3600


def test_hop_times_are_measured_by_the_one_clock(tmp_path, db_url, conn, processes):
    """A host clock an hour ahead of the database's (as a shift of the database's clock back shows) must
    not turn a hop of milliseconds into an hour."""
    folder = write_config(tmp_path / "config")
    cfg = load(folder)
    from common.store.sync import sync_config
    sync_config(conn, cfg)
    clock.shift(conn, -3600)
    processes.start(FIRST, folder, db_url)
    ticket_id = create_ticket(conn, cfg, "testms", "pipe", {})
    wait_until(lambda: get_ticket(conn, ticket_id).state == 2, 30, "the ticket to move on")

    def hops():
        return conn.execute("SELECT hop_buckets, hop_sum_s FROM bot_stats WHERE bot_name = %s", (FIRST,)).fetchone()
    wait_until(lambda: hops() and sum(hops()["hop_buckets"].values()) == 1, 30, "the bot's stats to be written")
    assert 0 < hops()["hop_sum_s"] < 30
