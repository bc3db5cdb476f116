"""What every command of the CLI needs: the config it was pointed at, a connection, JSON output."""

import json
from datetime import datetime

from common.config.load import load
from common.store.connect import connect
from common.store.server import resolve_url


def load_config(args):
    return load(args.config)


def connection(config):
    return connect(resolve_url(config))


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data):
    print(json.dumps(data, default=_json_default, indent=2, sort_keys=True))
