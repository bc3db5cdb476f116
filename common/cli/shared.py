"""What every command of the CLI needs: the config it was pointed at, a connection, JSON output."""

import json
from datetime import datetime

from common.config.load import load, load_for_monitoring
from common.store.connect import SessionTimeouts, connect
from common.store.server import resolve_url

# A command's session: a person (or a script) waits at the other end. A lock held for more than a second is
# someone's open transaction, and a move by hand tries again within its wait (common/tickets/manual.py)
# instead of queueing behind it; a statement running for a minute is stuck, and saying so beats hanging.
CLI_TIMEOUTS = SessionTimeouts(lock_timeout_s=1.0, statement_timeout_s=60.0)


def load_config_for_monitoring(args):
    """(config, None), or a view of the broken config that still finds the database, and its error."""
    return load_for_monitoring(args.config)


def with_config_problem(code, line, error, critical=2) -> tuple[int, str]:
    """`check`'s answer with a broken config folder as one more problem: CRITICAL, naming the file, line and
    field, and still the fleet's health as the database has it. Pure."""
    if error is None:
        return code, line
    health = line.split(": ", 1)[1] if line.startswith(("OK: ", "CRITICAL: ")) else line
    return critical, (f"CRITICAL: config: {error} (running processes keep the config they started with); "
                      f"{health}")


def load_config(args):
    return load(args.config)


def connection(config):
    return connect(resolve_url(config), timeouts=CLI_TIMEOUTS)


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data):
    print(json.dumps(data, default=_json_default, indent=2, sort_keys=True))
