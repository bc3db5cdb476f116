"""Webhooks (seed 004: "calling the webservice on change to status"): a type's callback_url, and an outbox
of state changes to POST, filled by a statement-level trigger on ticket_events, so each row commits in
the same transaction as the change it reports, whichever code path made it. Only adds: compatible.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)

# One row per state change and receiver (the ticket's own callback_url, its type's); a NOTIFY wakes the
# delivery bot. A ticket with neither costs a lookup of its row per statement, nothing more.
_ENQUEUE = """
CREATE FUNCTION botfleet_enqueue_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_outbox (ticket_id, event_id, metaservice, ticket_type, url, from_state, to_state, at)
    SELECT e.ticket_id, e.id, t.metaservice, t.ticket_type, u.url, e.from_state, e.to_state, e.at
    FROM new_events e
    JOIN tickets t ON t.id = e.ticket_id
    LEFT JOIN ticket_types tt ON tt.metaservice = t.metaservice AND tt.name = t.ticket_type
    CROSS JOIN LATERAL (SELECT DISTINCT x FROM unnest(ARRAY[t.callback_url, tt.callback_url]) AS x
                        WHERE x IS NOT NULL) AS u(url)
    WHERE e.from_state IS DISTINCT FROM e.to_state
    ORDER BY e.id;
    IF FOUND THEN
        PERFORM pg_notify('bf.botfleet.webhook.1', '');
    END IF;
    RETURN NULL;
END $$
"""


def upgrade():
    op.add_column("ticket_types", sa.Column("callback_url", sa.Text))
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.BigInteger, autoincrement=True),
        sa.Column("ticket_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("ticket_type", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("from_state", sa.Integer),
        sa.Column("to_state", sa.Integer),
        sa.Column("at", TZ, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_try_at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("last_error", sa.Text),
        sa.Column("done_at", TZ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_outbox_state"),
    )
    op.create_index("ix_webhook_outbox_pending", "webhook_outbox", ["ticket_id", "url", "id"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_webhook_outbox_done_at", "webhook_outbox", ["done_at"],
                    postgresql_where=sa.text("done_at IS NOT NULL"))
    op.execute(_ENQUEUE)
    op.execute("""CREATE TRIGGER tr_ticket_events_webhooks AFTER INSERT ON ticket_events
        REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION botfleet_enqueue_webhooks()""")


def downgrade():
    op.execute("DROP TRIGGER tr_ticket_events_webhooks ON ticket_events")
    op.execute("DROP FUNCTION botfleet_enqueue_webhooks()")
    op.drop_table("webhook_outbox")
    op.drop_column("ticket_types", "callback_url")
