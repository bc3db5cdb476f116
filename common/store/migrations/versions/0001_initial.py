"""Tickets, their events, the synced ticket types and status codes, and the bot registry.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "tickets",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("ticket_type", sa.Text, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("creator", sa.Text),
        sa.Column("group_role", sa.Text),
        sa.Column("assigned_user", sa.Text),
        sa.Column("parent_id", sa.BigInteger),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("state_entered_at", TZ, nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("deadline_at", TZ),
        sa.Column("next_reminder_at", TZ),
        sa.Column("due_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("waiting_for", sa.BigInteger),
        sa.Column("has_waiters", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", TZ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("step", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("result", sa.Text),
        sa.Column("closed_at", TZ),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
    )
    op.create_index("ix_tickets_claim", "tickets", ["metaservice", "ticket_type", "state", "due_at"],
                    postgresql_where=sa.text("closed_at IS NULL"))
    op.create_index("ix_tickets_closed", "tickets", ["metaservice", "ticket_type", "state", "closed_at"],
                    postgresql_where=sa.text("closed_at IS NOT NULL"))
    op.create_index("ix_tickets_lease_owner", "tickets", ["lease_owner"],
                    postgresql_where=sa.text("lease_owner IS NOT NULL"))
    op.create_index("ix_tickets_waiting_for", "tickets", ["waiting_for"],
                    postgresql_where=sa.text("waiting_for IS NOT NULL"))
    op.create_index("ix_tickets_parent_id", "tickets", ["parent_id"],
                    postgresql_where=sa.text("parent_id IS NOT NULL"))

    op.create_table(
        "ticket_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("ticket_id", sa.BigInteger, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("from_state", sa.Integer),
        sa.Column("to_state", sa.Integer),
        sa.Column("at", TZ, nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("actor", sa.Text),
        sa.Column("detail", JSONB),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_events"),
        sa.UniqueConstraint("ticket_id", "step", "kind", name="uq_ticket_events_step"),
    )

    op.create_table(
        "status_codes",
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("ticket_type", sa.Text, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("normal_next", sa.Integer),
        sa.Column("alternates", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.PrimaryKeyConstraint("metaservice", "ticket_type", "code", name="pk_status_codes"),
    )
    op.create_table(
        "ticket_types",
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("initial_state", sa.Integer, nullable=False),
        sa.Column("lifetime_s", sa.Float, nullable=False),
        sa.Column("notification_frequency_s", sa.Float, nullable=False),
        sa.Column("retention_s", sa.Float, nullable=False),
        sa.Column("group_role", sa.Text),
        sa.Column("exclusive", sa.Boolean, nullable=False),
        sa.Column("runs_when_locked", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("metaservice", "name", name="pk_ticket_types"),
    )
    op.create_table(
        "bots",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("metaservice", sa.Text, nullable=False),
        sa.Column("ticket_type", sa.Text, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("state_name", sa.Text, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.PrimaryKeyConstraint("name", name="pk_bots"),
    )
    op.create_table(
        "bot_processes",
        sa.Column("instance_id", sa.Text, nullable=False),
        sa.Column("bot_name", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("started_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("heartbeat_at", TZ, nullable=False, server_default=sa.text("now()")),
        sa.Column("stopped_at", TZ),
        sa.Column("processed", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("instance_id", name="pk_bot_processes"),
    )
    op.create_index("ix_bot_processes_bot_name", "bot_processes", ["bot_name", "heartbeat_at"])


def downgrade():
    for table in ("bot_processes", "bots", "ticket_types", "status_codes", "ticket_events", "tickets"):
        op.drop_table(table)
