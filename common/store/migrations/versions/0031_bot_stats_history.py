"""bot_stats_history: per bot, its cumulative transitions and hop histogram as they stood each minute, an hour
of them, so the console can draw the last minutes (bot_stats holds totals only, which have no history). The
watchdogs write a snapshot once a minute and drop what is older than an hour. Only adds: compatible.

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "bot_stats_history",
        sa.Column("bot_name", sa.Text, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("transitions", sa.BigInteger, nullable=False),
        sa.Column("hop_buckets", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("bot_name", "at", name="pk_bot_stats_history"),
    )


def downgrade():
    op.drop_table("bot_stats_history")
