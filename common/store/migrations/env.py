"""Alembic environment: runs on the connection botfleet hands in (see common/store/migrate.py)."""

from alembic import context

from common.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, compare_server_default=False)
with context.begin_transaction():
    context.run_migrations()
