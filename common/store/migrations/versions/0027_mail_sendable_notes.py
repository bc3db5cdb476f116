"""notifications.email_sendable_at: when a mail first became sendable (its delivery window open), from which
mail.stuck_after counts; mail held for a window is not stuck. notifications.email_note: why a mail was not sent,
for its new states 'dropped' (its reason is gone: the ticket was accepted, closed or timed out) and 'merged' (a
later round about the same ticket went instead). Only adds: compatible (older code neither reads the columns
nor writes the states, and leaves such rows alone).

Revision ID: 0027
Revises: 0026
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("notifications", sa.Column("email_sendable_at", TIMESTAMP(timezone=True)))
    op.add_column("notifications", sa.Column("email_note", sa.Text))


def downgrade():
    op.drop_column("notifications", "email_note")
    op.drop_column("notifications", "email_sendable_at")
