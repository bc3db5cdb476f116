"""A bot's one connection to the database: its claims and writes, and its LISTEN.

psycopg keeps the notifications that arrive while a statement runs, and hands them out at the next
`notifies()`; between statements the control loop sleeps on the connection's socket (and on its inbox's
pipe) until its next deadline. So one connection serves both, where a listener thread used to keep a
second one: a fleet of N bots holds N connections, not 2N.
"""

import logging
import select
import time

import psycopg

from common.store import sql
from common.store.connect import close_quietly, connect
from common.store.reconnect import Backoff

log = logging.getLogger("botfleet.bot")


class BotConnection:
    def __init__(self, url, application_name, channels, session_timeouts):
        self.url, self.application_name = url, application_name
        self.channels = tuple(channels)
        self.session_timeouts = session_timeouts
        self.conn = None
        self.connected_at_mono = 0.0

    def open(self):
        conn = connect(self.url, autocommit=True, application_name=self.application_name)
        try:
            conn.execute(sql.BOT_SESSION_SETUP)
            conn.execute(sql.BOT_SESSION_TIMEOUTS, self.session_timeouts)
            for channel in self.channels:
                conn.execute(sql.listen(channel))
            # A bot runs the same few statements for its whole life, most of them once a sweep: prepared at
            # their first run, not their fifth, so an idle bot's server does not plan each sweep afresh.
            conn.prepare_threshold = 0
        except BaseException:
            close_quietly(conn)
            raise
        self.conn = conn
        self.connected_at_mono = time.monotonic()
        return conn

    def reopen(self, stopping) -> bool:
        """Connect again, with backoff, until connected (True) or `stopping` is set (False). Notifications
        sent meanwhile are lost: the caller sweeps."""
        close_quietly(self.conn)
        backoff = Backoff()
        while not stopping.is_set():
            try:
                self.open()
                log.info("reconnected to the database")
                return True
            except psycopg.OperationalError as exc:
                delay_s = backoff.next_s()
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay_s)
                stopping.wait(delay_s)
        return False

    def wait(self, inbox, timeout_s) -> list:
        """The notifications that arrived, once there are any, or the inbox rings, or timeout_s passes."""
        notes = list(self.conn.notifies(timeout=0))  # kept from the last statements, or readable now
        if notes or not inbox.empty():
            return notes
        readable, _, _ = select.select([self.conn.fileno(), inbox.fileno()], [], [], max(0.0, timeout_s))
        if self.conn.fileno() in readable:
            # A lost connection reads as readable too: notifies() then raises OperationalError.
            return list(self.conn.notifies(timeout=0))
        return []

    def close(self):
        close_quietly(self.conn)
