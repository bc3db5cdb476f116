"""Retention: archive tables for closed tickets and their history, and an index of events by ticket.

A final state's bot removes the tickets closed longer than their type's retention, with their events,
deleting them or moving them to tickets_archive and ticket_events_archive (`on_retention`). An archived row is kept
whole as JSON, so the archive never has to follow the columns of the live tables. Events are found by ticket through an index of their own: the unique index of steps
leaves reminders out and so cannot serve `WHERE ticket_id = ...`. Only adds: compatible.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"])
    for table, key in (("tickets_archive", "id"), ("ticket_events_archive", "ticket_id")):
        op.create_table(
            table,
            sa.Column(key, sa.BigInteger, nullable=False),
            sa.Column("row", JSONB, nullable=False),
            sa.Column("archived_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
        )
        op.create_index(f"ix_{table}_{key}", table, [key])


def downgrade():
    op.drop_table("ticket_events_archive")
    op.drop_table("tickets_archive")
    op.drop_index("ix_ticket_events_ticket_id", "ticket_events")
