"""The watchdog: its heartbeats and fleet-wide lease, its actions, bot health, and bot statistics.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "watchdogs",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("heartbeat_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("last_check_at", TZ),
        sa.PrimaryKeyConstraint("name", name="pk_watchdogs"),
    )
    op.create_table(
        "fleet_leases",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_fleet_leases"),
    )
    op.create_table(
        "watchdog_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("watchdog", sa.Text, nullable=False),
        sa.Column("bot", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_watchdog_events"),
    )
    op.create_index("ix_watchdog_events_bot", "watchdog_events", ["bot", "at"])
    op.add_column("bots", sa.Column("health", sa.Text))
    op.add_column("bots", sa.Column("health_reason", sa.Text))
    op.add_column("bots", sa.Column("health_at", TZ))
    op.create_table(
        "bot_stats",
        sa.Column("bot_name", sa.Text, nullable=False),
        sa.Column("transitions", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("handler_failures", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("error_tickets", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("timeouts", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("reminders", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("hop_buckets", ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("hop_sum_s", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("handler_buckets", ARRAY(sa.BigInteger), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("handler_sum_s", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("bot_name", name="pk_bot_stats"),
    )


def downgrade():
    op.drop_table("bot_stats")
    for column in ("health_at", "health_reason", "health"):
        op.drop_column("bots", column)
    op.drop_table("watchdog_events")
    op.drop_table("fleet_leases")
    op.drop_table("watchdogs")
