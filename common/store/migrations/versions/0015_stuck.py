"""tickets.stuck_reported_at: a ticket that stays in a bot's state longer than the bot's stuck_after raises
one error ticket for that stay, not one per sweep. Only adds: compatible.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("tickets", sa.Column("stuck_reported_at", TIMESTAMP(timezone=True)))
    op.create_index("ix_tickets_stuck", "tickets", ["metaservice", "ticket_type", "state", "state_entered_at"],
                    postgresql_where=sa.text("closed_at IS NULL AND stuck_reported_at IS NULL"))


def downgrade():
    op.drop_index("ix_tickets_stuck", "tickets")
    op.drop_column("tickets", "stuck_reported_at")
