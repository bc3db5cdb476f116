"""Alembic migrations of botfleet's schema (common/store/migrations/versions)."""

# The newest revision, which this code needs. Bots compare it with alembic_version without
# importing Alembic or SQLAlchemy (both are heavy for a process that a fleet runs dozens of).
SCHEMA_HEAD = "0032"
# Revisions are numbered "0001", "0002", ...: as strings they sort in the order they were written.
