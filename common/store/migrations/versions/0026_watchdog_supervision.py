"""What the watchdog needs for issue 19. watchdogs.supervisor_error: why the host's supervisord did not answer at
the watchdog's last check (NULL: it did), so that `botfleet check` reports a dead supervisord. bot_health's
restarts_in_a_row and restart_backoff_until: the watchdog's restart backoff per bot and host, for `botfleet
status` and the metrics. bot_processes.deregistered: the process ended its registration itself (a clean stop),
which tells an operator's restart from a crash. Compatible: older code neither reads nor writes them.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

TZ = TIMESTAMP(timezone=True)


def upgrade():
    op.add_column("watchdogs", sa.Column("supervisor_error", sa.Text))
    op.add_column("bot_health", sa.Column("restarts_in_a_row", sa.Integer, nullable=False, server_default="0"))
    op.add_column("bot_health", sa.Column("restart_backoff_until", TZ))
    op.add_column("bot_processes", sa.Column("deregistered", sa.Boolean, nullable=False, server_default="false"))


def downgrade():
    op.drop_column("bot_processes", "deregistered")
    op.drop_column("bot_health", "restart_backoff_until")
    op.drop_column("bot_health", "restarts_in_a_row")
    op.drop_column("watchdogs", "supervisor_error")
