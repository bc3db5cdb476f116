"""Status models (seed 001, statusek): the objects and statuses of config/status_models, instances of
them known by a token, and the statuses set on each, at most once (a unique key, so two concurrent
calls cannot both set one). Only adds: compatible.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP, UUID

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.create_table(
        "status_objects",
        sa.Column("id", sa.Integer, sa.Identity()),
        sa.Column("object_name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_status_objects"),
        sa.UniqueConstraint("object_name", name="uq_status_objects_object_name"),
    )
    op.create_table(
        "object_statuses",
        sa.Column("id", sa.Integer, sa.Identity()),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("status_objects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("type", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_object_statuses"),
        sa.UniqueConstraint("object_id", "name", name="uq_object_statuses_object_id"),
        sa.CheckConstraint("type IN ('MANDATORY', 'OPTIONAL', 'STOP')", name="ck_object_statuses_type"),
    )
    op.create_table(
        "status_instances",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column("token", UUID, nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("status_objects.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.Column("timeout_s", sa.Integer, nullable=False),
        sa.Column("deadline_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("finish_reason", sa.Text),
        sa.Column("stop_status", sa.Text),
        # How many statuses are set: a setStatus writes only if it is still what it read (compare and set).
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_status_instances"),
        sa.UniqueConstraint("token", name="uq_status_instances_token"),
        sa.CheckConstraint("timeout_s > 0", name="ck_status_instances_timeout"),
        sa.CheckConstraint("finish_reason IN ('completed', 'stopped', 'timed_out')",
                           name="ck_status_instances_reason"),
    )
    op.create_index("ix_status_instances_deadline", "status_instances", ["deadline_at"],
                    postgresql_where=sa.text("finished_at IS NULL"))
    op.create_table(
        "status_events",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column("instance_id", sa.BigInteger, sa.ForeignKey("status_instances.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("status_name", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("at", TZ, nullable=False, server_default=sa.text("botfleet_now()")),
        sa.PrimaryKeyConstraint("id", name="pk_status_events"),
        sa.UniqueConstraint("instance_id", "status_name", name="uq_status_events_instance_id"),
    )


def downgrade():
    op.drop_table("status_events")
    op.drop_table("status_instances")
    op.drop_table("object_statuses")
    op.drop_table("status_objects")
