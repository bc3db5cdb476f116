"""bot_processes.loop_turns: the control loop's turns, written with each heartbeat, so that a test (and an
operator) can see a process that spins while it has nothing to do. bot_messages.taken_by and taken_until: a
message is taken with a lease on real time and handled outside any transaction (its on_<kind> function
runs on the handler pool under handler_timeout); a message whose bot died meanwhile is taken again after
the lease. ix_bot_processes_bot_name loses heartbeat_at: every heartbeat changed an indexed column, so no
heartbeat was a HOT update and each wrote index entries; a bot's handful of rows needs only its name.
Compatible: older code runs the same statements, on the narrower index.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.add_column("bot_processes", sa.Column("loop_turns", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("bot_messages", sa.Column("taken_by", sa.Text))
    op.add_column("bot_messages", sa.Column("taken_until", TZ))
    op.drop_index("ix_bot_processes_bot_name", table_name="bot_processes")
    op.create_index("ix_bot_processes_bot_name", "bot_processes", ["bot_name"])


def downgrade():
    op.drop_index("ix_bot_processes_bot_name", table_name="bot_processes")
    op.create_index("ix_bot_processes_bot_name", "bot_processes", ["bot_name", "heartbeat_at"])
    op.drop_column("bot_messages", "taken_until")
    op.drop_column("bot_messages", "taken_by")
    op.drop_column("bot_processes", "loop_turns")
