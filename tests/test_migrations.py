"""The migrations build exactly the schema that common/store/schema.py describes, and SCHEMA_HEAD is their head."""

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from common.store.migrations import SCHEMA_HEAD
from common.store.schema import metadata


def test_schema_head_is_the_newest_migration():
    cfg = Config()
    cfg.set_main_option("script_location", "common.store:migrations")
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrated_database_matches_the_metadata(db_url):
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert diff == []
