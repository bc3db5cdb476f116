"""Messages between bots (send_bot_notification): persisted, then a NOTIFY to the receiving bot, which
hands each to its handler module's function for that kind (parse_notification) and records the outcome.
bot_stats counts the messages a bot rejected. Only adds: compatible.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bot_messages",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("to_bot", sa.Text, nullable=False),
        sa.Column("ticket_id", sa.BigInteger),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("sender", sa.Text),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("handled_at", TIMESTAMP(timezone=True)),
        sa.Column("outcome", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_bot_messages_to_bot", "bot_messages", ["to_bot", "id"],
                    postgresql_where=sa.text("handled_at IS NULL"))
    op.add_column("bot_stats", sa.Column("notifications_rejected", sa.BigInteger, nullable=False,
                                         server_default=sa.text("0")))


def downgrade():
    op.drop_column("bot_stats", "notifications_rejected")
    op.drop_table("bot_messages")
