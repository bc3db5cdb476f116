"""`botfleet api run`: the API served by uvicorn on api.listen."""

import logging

import uvicorn

from api.app import create_app
from common.config.models import split_listen

log = logging.getLogger("botfleet.api")


def serve(config, url: str, *, log_level: str = "info") -> None:
    host, port = split_listen(config.api_listen)
    log.info("API listening on http://%s:%d", host, port)
    uvicorn.run(create_app(config, url), host=host, port=port, log_level=log_level, access_log=False,
                server_header=False)
