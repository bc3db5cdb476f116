"""botfleet_schema: which code can run against this schema, so that an expanded schema does not stop older code.

Every later migration that only adds (a table, a nullable column) leaves compatible_since as it is;
one that removes or changes what older code uses sets it to its own revision (expand, then contract).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "botfleet_schema",
        sa.Column("id", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("compatible_since", sa.Text, nullable=False),
        sa.CheckConstraint("id", name="botfleet_schema_one_row"),
    )
    op.execute("INSERT INTO botfleet_schema (compatible_since) VALUES ('0005')")


def downgrade():
    op.drop_table("botfleet_schema")
