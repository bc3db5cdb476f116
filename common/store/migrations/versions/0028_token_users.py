"""A token of the HTTP API may be bound to a user (`botfleet token create --user ann`): it then creates tickets
as that user and accepts them only as that user. NULL: bound to nobody. Compatible: older code neither reads
nor writes it.

Revision ID: 0028
Revises: 0027
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("api_tokens", sa.Column("user_name", sa.Text))


def downgrade():
    op.drop_column("api_tokens", "user_name")
