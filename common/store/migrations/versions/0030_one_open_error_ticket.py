"""uq_tickets_open_error: a ticket has at most one open error ticket; a later reason is added to the open one.

Before it, a ticket parked on an open error ticket got a second one when its lifetime ran out, and waited for
that one only. Such extra open error tickets are folded here into the one the ticket waits for (else its
newest): their reasons go to its `reasons`, and they are closed as resolved, with a 'closed' event naming it.
Compatible: older code runs on; only a second open error ticket of one ticket, which it would have made, is
refused (and retried as a failed step).

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

OPEN_ERROR = "e.metaservice = 'botfleet' AND e.ticket_type = 'error' AND e.closed_at IS NULL AND e.parent_id IS NOT NULL"

FOLD_EXTRA_OPEN_ERRORS = f"""
WITH ranked AS (
    SELECT e.id, e.step, e.state, e.payload->'reason' AS reason,
           first_value(e.id) OVER (PARTITION BY e.parent_id
                                   ORDER BY (p.waiting_for = e.id) IS TRUE DESC, e.id DESC) AS keep
    FROM tickets e LEFT JOIN tickets p ON p.id = e.parent_id
    WHERE {OPEN_ERROR}
), kept AS (
    UPDATE tickets t SET payload = t.payload || jsonb_build_object('reasons', r.reasons)
    FROM (SELECT keep, jsonb_agg(reason ORDER BY id) AS reasons FROM ranked GROUP BY keep HAVING count(*) > 1) r
    WHERE t.id = r.keep
), closed AS (
    UPDATE tickets t SET state = 2, step = t.step + 1, closed_at = botfleet_now(), lease_owner = NULL,
                         lease_expires_at = NULL, waiting_for = NULL, due_at = botfleet_now()
    FROM ranked r WHERE t.id = r.id AND r.id <> r.keep
    RETURNING t.id, t.step, r.state AS from_state, r.keep
)
INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
SELECT id, step, 'closed', from_state, 2, 'botfleet db upgrade', jsonb_build_object('folded_into', keep) FROM closed
"""


def upgrade():
    op.execute(FOLD_EXTRA_OPEN_ERRORS)
    op.create_index("uq_tickets_open_error", "tickets", ["parent_id"], unique=True, postgresql_where=sa.text(
        "metaservice = 'botfleet' AND ticket_type = 'error' AND closed_at IS NULL AND parent_id IS NOT NULL"))


def downgrade():
    op.drop_index("uq_tickets_open_error", "tickets")
