"""`botfleet db upgrade`: Alembic migrations, then the config written to its tables.

Only the CLI imports this module: Alembic and SQLAlchemy stay out of bots and the watchdog.
"""

import psycopg

from common.store import sql
from common.store.connect import connect, libpq_url
from common.store.sync import sync_config


def upgrade(url: str, config=None, revision: str = "head"):
    """Migrate to the newest revision (or the one given), then write the config's ticket types and bots
    to their tables.

    One upgrade at a time per database: two hosts upgrading at once (`botfleet up` on both) would both
    find the schema behind and run the same migrations, and one of them fail half-way. The second waits
    for the first, then finds the schema at head."""
    # A lock of this session, held while the upgrade runs on connections of its own: it ends with the session,
    # also when this process dies holding it.
    with connect(url, autocommit=True, application_name="botfleet db upgrade") as lock:
        lock.execute(sql.LOCK_UPGRADES)
        _upgrade(url, config, revision)


def _upgrade(url: str, config, revision: str):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    # psycopg opens the connection, so any libpq URL or "key=value" conninfo works here too.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(libpq_url(url)))
    try:
        with engine.begin() as connection:
            alembic_cfg = Config()
            alembic_cfg.set_main_option("script_location", "common.store:migrations")
            alembic_cfg.attributes["connection"] = connection
            command.upgrade(alembic_cfg, revision)
    finally:
        engine.dispose()
    if config is not None:
        with connect(url) as conn:
            sync_config(conn, config)
