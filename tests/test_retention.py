"""Retention at scale: a final state's bot clears a million closed tickets batch by batch, while the
rest of the fleet goes on moving tickets."""

import pytest

from common.config.load import load
from common.store.sync import sync_config
from common.tickets.create import create_tickets
from tests.conftest import THREE_STATES, registered, wait_until, write_config

pytestmark = pytest.mark.processes

OLD = 1_000_000


@pytest.mark.volume
def test_a_million_closed_tickets_are_cleared_in_batches_while_the_fleet_moves_on(tmp_path, db_url, conn, processes):
    folder = write_config(tmp_path / "config", types={"testms/three": THREE_STATES})
    cfg = load(folder)
    sync_config(conn, cfg)
    # A million tickets closed in the final state two days ago (past the one-day retention), and a
    # thousand closed an hour ago, which stay.
    conn.execute("""
        INSERT INTO tickets (metaservice, ticket_type, state, payload, creator, created_at, state_entered_at,
                             deadline_at, next_reminder_at, due_at, step, closed_at)
        SELECT 'testms', 'three', 3, '{}', 'test', t.at, t.at, t.at, t.at, t.at, 2,
               CASE WHEN g <= %(old)s THEN t.at ELSE botfleet_now() - interval '1 hour' END
        FROM generate_series(1, %(all)s) g, LATERAL (SELECT botfleet_now() - interval '2 days' AS at) t
    """, {"old": OLD, "all": OLD + 1000})
    conn.execute("ANALYZE tickets")

    def old_left():
        return conn.execute("SELECT count(*) AS n FROM tickets WHERE closed_at < botfleet_now() - interval '1 day'"
                            ).fetchone()["n"]
    final, first, second = (processes.start(name, folder, db_url)
                            for name in ("testms-three-3-c", "testms-three-1-a", "testms-three-2-b"))
    wait_until(registered(conn, 3), 30, "the bots to register")
    # Tickets go through the pipeline while the clearing runs: nobody waits for it to finish.
    flow = create_tickets(conn, cfg, "testms", "three", [{"n": n} for n in range(50)])
    wait_until(lambda: conn.execute("SELECT count(*) AS n FROM tickets WHERE id = ANY(%s) AND closed_at IS NOT NULL",
                                    (flow,)).fetchone()["n"] == len(flow), 60, "the new tickets to go through")
    seen = [old_left()]
    assert 0 < seen[0] < OLD, f"clearing had started and was not over when the pipeline was done: {seen[0]} left"
    # Batch by batch, each its own transaction: another connection sees the count go down in steps.

    def cleared():
        seen.append(old_left())
        return seen[-1] == 0
    wait_until(cleared, 240, lambda: f"the old closed tickets to be cleared: {seen[-1]} left")
    steps = sorted(set(seen), reverse=True)
    assert len(steps) >= 3, f"the clearing was seen in {len(steps)} steps: {steps}"
    assert conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = 'testms'").fetchone()["n"] == 1000 + len(flow)
    assert all(p.poll() is None for p in (final, first, second)), "every bot is still up"
