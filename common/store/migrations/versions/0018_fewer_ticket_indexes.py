"""Fewer indexes on tickets, so a step, a claim and a timer round write fewer index entries: the lifetime
deadline and the next acceptance round or reminder share one index on the sooner of the two
(ix_tickets_timer), and the lease owner's index goes (a process's tickets are found through their state).
Only drops and adds indexes: compatible, older code reads the same rows, if more slowly.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_OPEN_NOT_TIMED_OUT = "closed_at IS NULL AND timed_out_at IS NULL"


def upgrade():
    op.create_index("ix_tickets_timer", "tickets",
                    ["metaservice", "ticket_type", "state", sa.text("least(next_reminder_at, deadline_at)")],
                    postgresql_where=sa.text(_OPEN_NOT_TIMED_OUT))
    op.drop_index("ix_tickets_deadline", "tickets")
    op.drop_index("ix_tickets_reminder", "tickets")
    op.drop_index("ix_tickets_lease_owner", "tickets")


def downgrade():
    op.create_index("ix_tickets_lease_owner", "tickets", ["lease_owner"],
                    postgresql_where=sa.text("lease_owner IS NOT NULL"))
    op.create_index("ix_tickets_reminder", "tickets", ["metaservice", "ticket_type", "state", "next_reminder_at"],
                    postgresql_where=sa.text("closed_at IS NULL"))
    op.create_index("ix_tickets_deadline", "tickets", ["metaservice", "ticket_type", "state", "deadline_at"],
                    postgresql_where=sa.text(_OPEN_NOT_TIMED_OUT))
    op.drop_index("ix_tickets_timer", "tickets")
