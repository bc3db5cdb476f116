"""Run-time overrides of a ticket type's lifetime and notification frequency (the seed's administration
panel): the YAML value stays the default, `botfleet type set` overrides it, and the running bots read
the override with every ticket they create and every round they send. Only adds: compatible.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("ticket_types", sa.Column("lifetime_override_s", sa.Float))
    op.add_column("ticket_types", sa.Column("notification_frequency_override_s", sa.Float))


def downgrade():
    op.drop_column("ticket_types", "notification_frequency_override_s")
    op.drop_column("ticket_types", "lifetime_override_s")
