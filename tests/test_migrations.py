"""The migrations build exactly the schema that common/schema.py describes, and SCHEMA_HEAD is their head."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from sqlalchemy import create_engine
import psycopg

from common.migrations import SCHEMA_HEAD
from common.schema import metadata


def test_schema_head_is_the_newest_migration():
    cfg = Config()
    cfg.set_main_option("script_location", "common:migrations")
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrated_database_matches_the_metadata(db_url):
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert diff == []
