"""`botfleet api run`: the API served by uvicorn on api.listen."""

import logging

import uvicorn

from api.app import create_app
from common.config.models import split_listen

log = logging.getLogger("botfleet.api")


def serve(config, url: str, *, spec=None, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT; with `spec`, as the fleet's built-in bot botfleet-api-1-serve."""
    host, port = split_listen(config.api_listen)
    log.info("API listening on http://%s:%d", host, port)
    uvicorn.run(create_app(config, url, spec), host=host, port=port, log_level=log_level, access_log=False,
                server_header=False)
