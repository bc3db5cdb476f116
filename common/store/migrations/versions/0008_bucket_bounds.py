"""Histogram buckets stored with their bounds, and a sequence number that makes a bot's stats idempotent.

bot_stats kept bucket counts by position, so a release that changed the buckets would have added
counts of one bound to another. They are now JSON objects {upper bound: count} ("+Inf" for the
rest), merged bound by bound. bot_processes.stats_seq is the last batch of stats a process had
counted: a heartbeat sent again after its reply was lost is a no-op. Older code writes arrays:
compatible_since moves here.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The bounds the arrays were written with, until this revision (their positions' meaning, frozen here).
HOP_BOUNDS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HANDLER_BOUNDS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _keys(bounds_s) -> str:
    return "ARRAY[" + ", ".join(f"'{float(b)!r}'" for b in bounds_s) + ", '+Inf']"


def _convert(column, new_type, default, value_sql):
    """Replace a column by one of another type computed by `value_sql` (a subquery: not allowed in USING)."""
    op.execute(f"ALTER TABLE bot_stats ADD COLUMN {column}_new {new_type} NOT NULL DEFAULT {default}")
    op.execute(f"UPDATE bot_stats SET {column}_new = {value_sql}")
    op.execute(f"ALTER TABLE bot_stats DROP COLUMN {column}")
    op.execute(f"ALTER TABLE bot_stats RENAME COLUMN {column}_new TO {column}")


def upgrade():
    for column, bounds_s in (("hop_buckets", HOP_BOUNDS_S), ("handler_buckets", HANDLER_BOUNDS_S)):
        _convert(column, "jsonb", "'{}'::jsonb", f"""
            (SELECT coalesce(jsonb_object_agg(({_keys(bounds_s)})[n], c) FILTER (WHERE c > 0), '{{}}')
             FROM unnest({column}) WITH ORDINALITY AS x(c, n))""")
    op.add_column("bot_processes", sa.Column("stats_seq", sa.BigInteger, nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE botfleet_schema SET compatible_since = '0008'")


def downgrade():
    op.drop_column("bot_processes", "stats_seq")
    for column, bounds_s in (("hop_buckets", HOP_BOUNDS_S), ("handler_buckets", HANDLER_BOUNDS_S)):
        _convert(column, "bigint[]", "'{}'", f"""
            (SELECT array_agg(coalesce(({column}->>k)::bigint, 0) ORDER BY n)
             FROM unnest({_keys(bounds_s)}) WITH ORDINALITY AS x(k, n))""")
    op.execute("UPDATE botfleet_schema SET compatible_since = '0007'")
