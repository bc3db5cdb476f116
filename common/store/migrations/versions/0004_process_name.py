"""bot_processes.process_name: supervisord's name of the process, so a restarted process knows its predecessor.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("bot_processes", sa.Column("process_name", sa.Text))


def downgrade():
    op.drop_column("bot_processes", "process_name")
