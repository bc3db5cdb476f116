"""botfleet_now(): the one clock every timestamp and every comparison of times reads.

It is the database's clock plus an offset kept in botfleet_clock (zero unless shifted), so that a
test, or a rehearsal of what happens in a week, can move every bot's and watchdog's time forward
without touching their code: hours of lifetime run in seconds. The columns' defaults read it too.
Older code reads now(), which differs only while the clock is shifted: compatible.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULTS = {
    "tickets": ("created_at", "state_entered_at", "due_at"),
    "ticket_events": ("at",),
    "bot_processes": ("started_at", "heartbeat_at"),
    "watchdogs": ("started_at", "heartbeat_at"),
    "watchdog_events": ("at",),
}
OLD_DEFAULTS = {("tickets", "state_entered_at"): "clock_timestamp()", ("ticket_events", "at"): "clock_timestamp()"}


def upgrade():
    op.create_table(
        "botfleet_clock",
        sa.Column("id", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("offset_s", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("id", name="botfleet_clock_one_row"),
    )
    op.execute("INSERT INTO botfleet_clock (offset_s) VALUES (0)")
    # now(): the transaction's start, so every time one statement (or one transaction) writes is the
    # same, and a ticket's timestamps equal its events'. Bots write in autocommit, one statement per
    # transaction. STABLE, as now() is, so a comparison with it can use an index. PL/pgSQL, because
    # it keeps its query plan for the session. `WHERE id` lets the one-row read use the primary key:
    # bot sessions rule out sequential scans, and a scan priced that high was JIT-compiled at every
    # call (50 ms each on PostgreSQL 15).
    op.execute("""
        CREATE FUNCTION botfleet_now() RETURNS timestamptz LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
        BEGIN
            RETURN now() + coalesce((SELECT offset_s FROM botfleet_clock WHERE id), 0) * interval '1 second';
        END
        $$""")
    for table, columns in DEFAULTS.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT botfleet_now()")


def downgrade():
    for table, columns in DEFAULTS.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT "
                       f"{OLD_DEFAULTS.get((table, column), 'now()')}")
    op.execute("DROP FUNCTION botfleet_now()")
    op.drop_table("botfleet_clock")
