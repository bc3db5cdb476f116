"""The bot's listener: LISTEN on its state's channel (and the fleet lock's), on a connection of its own, and
wake the control loop.

psycopg serialises a connection's queries with its notification waits, so LISTEN cannot share the
control loop's connection. The listener reconnects with backoff; after a reconnect it wakes the loop
once more, because notifications sent while it was away are lost and only a sweep finds their tickets.
"""

import logging
import threading

import psycopg

from common.store import sql
from common.store.connect import connect
from common.store.reconnect import Backoff

log = logging.getLogger("botfleet.bot")

NOTIFY_WAIT_S = 1.0  # how long one wait for notifications lasts before the stop flag is looked at again


class Listener:
    def __init__(self, url, channels, application_name, wake, stopping: threading.Event, on_failure):
        self.url, self.channels, self.application_name = url, tuple(channels), application_name
        self.wake = wake
        self.stopping = stopping
        self.on_failure = on_failure  # called with the exception if the listener dies of anything but a lost connection
        self.listening = threading.Event()  # set once the first LISTEN is in place

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=self.application_name, daemon=True)
        thread.start()
        return thread

    def run(self):
        # A bot without its listener would fall back to sweeps alone without anybody noticing: any
        # failure other than a lost connection is reported, and the bot stops so that supervisord
        # starts it afresh.
        try:
            self._listen()
        except Exception as exc:
            log.exception("listener died")
            self.on_failure(exc)

    def _listen(self):
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                with connect(self.url, autocommit=True, application_name=self.application_name) as conn:
                    for channel in self.channels:
                        conn.execute(sql.listen(channel))
                    if self.listening.is_set():
                        self.wake("message")  # notifications were lost while disconnected: look at everything
                    self.listening.set()
                    backoff.reset()
                    while not self.stopping.is_set():
                        for notify in conn.notifies(timeout=NOTIFY_WAIT_S):
                            self.wake(notify.payload)
            except psycopg.OperationalError as exc:
                delay_s = backoff.next_s()
                log.warning("listener lost its connection (%s); retrying in %.1fs", exc, delay_s)
                self.stopping.wait(delay_s)
