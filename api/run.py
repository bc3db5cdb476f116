"""`botfleet api run`: the API served by uvicorn on api.listen."""

import asyncio
import logging

import uvicorn

from api.app import create_app
from common.config.models import split_listen

log = logging.getLogger("botfleet.api")

TICK_S = 1.0  # how often the idle server looks at its clock: its Date header is to the second anyway


class QuietServer(uvicorn.Server):
    """uvicorn's main loop wakes every 0.1s to notice a stop and refresh its Date header: ten wake-ups a
    second in an API with nothing to do. This one wakes once a second, and at once on SIGTERM or SIGINT."""

    async def main_loop(self) -> None:
        self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # uvicorn's ticks are tenths: every one of ours is a whole second
            try:
                await asyncio.wait_for(self._stop_event.wait(), TICK_S)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    def __init__(self, config, on_exit=None):
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if self.on_exit is not None:
            self.on_exit()
        stop_event = getattr(self, "_stop_event", None)
        if stop_event is not None:
            self._loop.call_soon_threadsafe(stop_event.set)


def serve(config, url: str, *, spec=None, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT; with `spec`, as the fleet's built-in bot botfleet-api-1-serve."""
    host, port = split_listen(config.api_listen)
    log.info("API listening on http://%s:%d", host, port)
    # On SIGTERM (a stop, `botfleet reload`) uvicorn stops listening and answers the requests in hand; as the
    # fleet's program it gives up on them after its stop timeout, so that it exits (and deregisters) before
    # supervisord's SIGKILL, rendered STOP_MARGIN_S later.
    app = create_app(config, url, spec)

    def end_live_streams():  # open console pages would hold the stop up until its timeout
        live = getattr(app.state, "live", None)
        if live is not None:
            live.closing_soon()
    QuietServer(uvicorn.Config(app, host=host, port=port, log_level=log_level, root_path=config.api_root_path,
                               access_log=False, server_header=False,
                               timeout_graceful_shutdown=spec.stop_timeout_s if spec else None),
                on_exit=end_live_streams).run()
