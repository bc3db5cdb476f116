"""Notifications (an outbox written with the outcome that causes them), and timer rounds per ticket.

notifications holds every message to a user: the in-app inbox reads it, and the delivery process
mails it (email_state pending -> sent, or undeliverable after its tries). Reminder events repeat
within one step, so the one-outcome-per-step rule becomes a unique index that leaves them out, and
the rounds due in a state are found through an index of their own. Only adds: compatible.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("ticket_id", sa.BigInteger),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("read_at", TZ),
        sa.Column("email_state", sa.Text, nullable=False),
        sa.Column("email_due_at", TZ),
        sa.Column("email_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("email_error", sa.Text),
        sa.Column("email_sent_at", TZ),
    )
    op.create_index("ix_notifications_user_name", "notifications", ["user_name", "id"])
    op.create_index("ix_notifications_email_due_at", "notifications", ["email_due_at"],
                    postgresql_where=sa.text("email_state = 'pending'"))
    op.drop_constraint("uq_ticket_events_step", "ticket_events", type_="unique")
    op.create_index("uq_ticket_events_step", "ticket_events", ["ticket_id", "step", "kind"], unique=True,
                    postgresql_where=sa.text("kind <> 'reminder'"))
    op.create_index("ix_tickets_reminder", "tickets", ["metaservice", "ticket_type", "state", "next_reminder_at"],
                    postgresql_where=sa.text("closed_at IS NULL"))


def downgrade():
    op.drop_index("ix_tickets_reminder", "tickets")
    op.drop_index("uq_ticket_events_step", "ticket_events")
    op.create_unique_constraint("uq_ticket_events_step", "ticket_events", ["ticket_id", "step", "kind"])
    op.drop_table("notifications")
