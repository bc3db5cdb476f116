"""Drop tickets.result: nothing ever wrote it (a ticket's outcome is its final state and its events).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_column("tickets", "result")


def downgrade():
    op.add_column("tickets", sa.Column("result", sa.Text))
