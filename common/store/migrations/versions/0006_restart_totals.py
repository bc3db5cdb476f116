"""watchdog_restart_totals: restarts counted as they happen, so restart events can be pruned like the rest.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "watchdog_restart_totals",
        sa.Column("bot", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("restarts", sa.BigInteger, nullable=False),
    )
    op.execute("""
        INSERT INTO watchdog_restart_totals (bot, reason, restarts)
        SELECT coalesce(bot, ''), split_part(reason, ':', 1), count(*) FROM watchdog_events
        WHERE action = 'restart' GROUP BY 1, 2
    """)


def downgrade():
    op.drop_table("watchdog_restart_totals")
