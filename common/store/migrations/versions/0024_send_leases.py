"""Leases of mail and webhook sends on real time: notifications.email_lease_until and
webhook_outbox.lease_until. A claimed batch is sent outside any transaction; until its lease runs out
(statement_timestamp(), which a shift of botfleet_now() does not move) nobody sends it again, even when
the bot died after sending and before marking it. Only adds: compatible (the claims also move the rows'
business due times on by the lease, which keeps older code's claims off them during an upgrade).

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.add_column("notifications", sa.Column("email_lease_until", TZ))
    op.add_column("webhook_outbox", sa.Column("lease_until", TZ))


def downgrade():
    op.drop_column("webhook_outbox", "lease_until")
    op.drop_column("notifications", "email_lease_until")
