"""tickets.timed_out_at: when the ticket's lifetime timeout was handled, so that it is handled once.

The bot of a ticket's state finds open tickets past their deadline through an index of their own.
Only adds: compatible.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("tickets", sa.Column("timed_out_at", TIMESTAMP(timezone=True)))
    op.create_index("ix_tickets_deadline", "tickets", ["metaservice", "ticket_type", "state", "deadline_at"],
                    postgresql_where=sa.text("closed_at IS NULL AND timed_out_at IS NULL"))


def downgrade():
    op.drop_index("ix_tickets_deadline", "tickets")
    op.drop_column("tickets", "timed_out_at")
