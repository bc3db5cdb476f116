"""People: users (with email, delivery window and time zone), groups and their members.

A ticket's group_role names a group; its members are asked to accept it, and only a member may be
its assignee. Only adds: compatible.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("email", sa.Text),
        sa.Column("window_start", sa.Time),
        sa.Column("window_end", sa.Time),
        sa.Column("tz", sa.Text, nullable=False, server_default=sa.text("'UTC'")),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
    )
    op.create_table(
        "groups",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("botfleet_now()")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_name", sa.Text, sa.ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_name", sa.Text, sa.ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_group_members_user_name", "group_members", ["user_name"])


def downgrade():
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_table("users")
