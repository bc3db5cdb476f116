"""A job's own fields (issue 20): tickets.job_name, object_type and object_id, set by POST /job beside the
payload instead of inside it, so that a job's instruction keeps its own keys of those names and DELETE
/operations finds an object's jobs by these columns alone. Jobs created before keep theirs in the payload
(not moved: the payload cannot tell a job's field from an instruction's key). Only adds: compatible.

Revision ID: 0029
Revises: 0028
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("tickets", sa.Column("job_name", sa.Text))
    op.add_column("tickets", sa.Column("object_type", sa.Text))
    op.add_column("tickets", sa.Column("object_id", sa.Text))
    op.create_index("ix_tickets_object", "tickets", ["object_type", "object_id"],
                    postgresql_where=sa.text("object_type IS NOT NULL"))


def downgrade():
    op.drop_index("ix_tickets_object", "tickets")
    op.drop_column("tickets", "object_id")
    op.drop_column("tickets", "object_type")
    op.drop_column("tickets", "job_name")
