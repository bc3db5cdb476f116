"""The fleet's lock (open, ops_only or closed, with who set it, why and when), the exclusive ticket that
holds it closed, and what it returns to; tickets gain start_after and callback_url. A trigger hands the
lock back when its holder closes, is deleted, or parks on an error ticket, so no code path that ends a
ticket can forget to. Only adds: compatible.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)

# The lock goes back to what it was before the holder closed it. Parking on an error ticket counts as
# the end of the run: a person may take hours, and the fleet must not stay closed that long.
_RELEASE = """
CREATE FUNCTION botfleet_release_fleet_lock() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended boolean;
    ticket tickets%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ticket := OLD;
        ended := true;
    ELSE
        ticket := NEW;
        ended := NEW.closed_at IS NOT NULL OR (NEW.waiting_for IS NOT NULL AND EXISTS (
            SELECT 1 FROM tickets e WHERE e.id = NEW.waiting_for
              AND e.metaservice = 'botfleet' AND e.ticket_type = 'error'));
    END IF;
    IF ended THEN
        UPDATE fleet_lock
        SET state = coalesce(before->>'state', 'open'), reason = before->>'reason',
            set_by = before->>'set_by', set_at = (before->>'set_at')::timestamptz,
            holder_ticket = NULL, before = NULL
        WHERE holder_ticket = ticket.id;
        IF FOUND THEN
            PERFORM pg_notify('bf.lock', 'released');
        END IF;
    END IF;
    RETURN NULL;
END $$
"""


def upgrade():
    op.create_table(
        "fleet_lock",
        sa.Column("id", sa.SmallInteger, server_default=sa.text("1")),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'open'")),
        sa.Column("reason", sa.Text),
        sa.Column("set_by", sa.Text),
        sa.Column("set_at", TZ),
        sa.Column("holder_ticket", sa.BigInteger),
        sa.Column("before", JSONB),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_lock"),
        sa.CheckConstraint("id = 1", name="ck_fleet_lock_one_row"),
        sa.CheckConstraint("state IN ('open', 'ops_only', 'closed')", name="ck_fleet_lock_state"),
    )
    op.execute("INSERT INTO fleet_lock (id, state, set_at) VALUES (1, 'open', botfleet_now())")
    op.add_column("tickets", sa.Column("start_after", TZ))
    op.add_column("tickets", sa.Column("callback_url", sa.Text))
    op.execute(_RELEASE)
    op.execute("""CREATE TRIGGER tr_tickets_release_fleet_lock
        AFTER UPDATE OF closed_at, waiting_for OR DELETE ON tickets
        FOR EACH ROW EXECUTE FUNCTION botfleet_release_fleet_lock()""")


def downgrade():
    op.execute("DROP TRIGGER tr_tickets_release_fleet_lock ON tickets")
    op.execute("DROP FUNCTION botfleet_release_fleet_lock()")
    op.drop_column("tickets", "callback_url")
    op.drop_column("tickets", "start_after")
    op.drop_table("fleet_lock")
