"""Indexes for the console's tickets (issue 21): a ticket's notifications and webhook deliveries read by
ticket_id (its page), and tickets by created_at (the list's "created between"). Without them each read a
table of millions whole: 200 ms and more a page. Only adds: compatible.

Revision ID: 0032
Revises: 0031
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_notifications_ticket_id", "notifications", ["ticket_id"],
                    postgresql_where=sa.text("ticket_id IS NOT NULL"))
    op.create_index("ix_webhook_outbox_ticket_id", "webhook_outbox", ["ticket_id"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])


def downgrade():
    op.drop_index("ix_tickets_created_at", "tickets")
    op.drop_index("ix_webhook_outbox_ticket_id", "webhook_outbox")
    op.drop_index("ix_notifications_ticket_id", "notifications")
