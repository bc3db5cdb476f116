"""Retention: archive tables for closed tickets and their history, and an index of events by ticket.

A final state's bot removes the tickets closed longer than their type's retention, with their events,
deleting them or moving them to tickets_archive and ticket_events_archive (`on_retention`). The archive
tables have the columns of their tables, in the same order (a migration that adds a column to one adds
it to the other). Events are found by ticket through an index of their own: the unique index of steps
leaves reminders out and so cannot serve `WHERE ticket_id = ...`. Only adds: compatible.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"])
    op.execute("CREATE TABLE tickets_archive (LIKE tickets)")
    op.execute("CREATE TABLE ticket_events_archive (LIKE ticket_events)")
    op.create_index("ix_tickets_archive_id", "tickets_archive", ["id"])
    op.create_index("ix_ticket_events_archive_ticket_id", "ticket_events_archive", ["ticket_id"])


def downgrade():
    op.drop_table("ticket_events_archive")
    op.drop_table("tickets_archive")
    op.drop_index("ix_ticket_events_ticket_id", "ticket_events")
