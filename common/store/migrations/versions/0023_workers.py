"""Pulling workers (seed 002): workers known by name with the session (process) that holds the name and
its last contact, the progress messages of a hold, once each, and per state how many holds were
abandoned or stalled. Only adds: compatible.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "workers",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("session", sa.Text, nullable=False, server_default=""),
        sa.Column("ticket_id", sa.BigInteger),  # the last ticket handed to it: held while its lease says so
        sa.Column("first_seen_at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("last_contact_at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.PrimaryKeyConstraint("name", name="pk_workers"),
    )
    op.create_table(
        "ticket_progress",
        # No foreign key: its triggers would run on every update of a ticket. The JOBSWEEPER clears
        # the progress of holds that ended without clearing it.
        sa.Column("ticket_id", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.PrimaryKeyConstraint("ticket_id", "message", name="pk_ticket_progress"),
    )
    op.create_table(
        "worker_state_stats",
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("ticket_type", sa.Text, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("abandoned", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("stalled", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("metaservice", "ticket_type", "state", name="pk_worker_state_stats"),
    )


def downgrade():
    op.drop_table("worker_state_stats")
    op.drop_table("ticket_progress")
    op.drop_table("workers")
