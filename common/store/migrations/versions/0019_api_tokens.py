"""The HTTP API's bearer tokens (only a hash of each is kept) with their scopes, and the idempotency keys
of POST /tickets: a retried request with the same key gets the first ticket back. Only adds: compatible.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.Text),
        sa.Column("token_hash", sa.Text, nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("revoked_at", TIMESTAMP(timezone=True)),
        sa.PrimaryKeyConstraint("name", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("token_name", sa.Text),
        sa.Column("key", sa.Text),
        sa.Column("ticket_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
        sa.PrimaryKeyConstraint("token_name", "key", name="pk_idempotency_keys"),
    )


def downgrade():
    op.drop_table("idempotency_keys")
    op.drop_table("api_tokens")
