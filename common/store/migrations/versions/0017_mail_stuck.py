"""notifications.email_stuck_reported_at: mail pending longer than mail.stuck_after is reported to the
operators once. Only adds: compatible.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("notifications", sa.Column("email_stuck_reported_at", TIMESTAMP(timezone=True)))


def downgrade():
    op.drop_column("notifications", "email_stuck_reported_at")
