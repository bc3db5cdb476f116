"""Health per bot and host, and the hosts that run each bot (`hosts:` in fleet.yaml).

Each host's watchdog judges its own processes; one shared health column per bot made a bot that one
host does not run flip between healthy and missing. Health moves to bot_health (bot, host), and
bots.hosts records which hosts run a bot (NULL: every host). Older code reads bots.health, which
this removes: compatible_since moves here (expand, then contract).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bot_health",
        sa.Column("bot_name", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("health", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TIMESTAMP(timezone=True), nullable=False),
    )
    op.add_column("bots", sa.Column("hosts", ARRAY(sa.Text)))
    for column in ("health", "health_reason", "health_at"):
        op.drop_column("bots", column)
    op.execute("UPDATE botfleet_schema SET compatible_since = '0007'")


def downgrade():
    op.add_column("bots", sa.Column("health", sa.Text))
    op.add_column("bots", sa.Column("health_reason", sa.Text))
    op.add_column("bots", sa.Column("health_at", TIMESTAMP(timezone=True)))
    op.drop_column("bots", "hosts")
    op.drop_table("bot_health")
    op.execute("UPDATE botfleet_schema SET compatible_since = '0005'")
