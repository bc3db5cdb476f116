"""The one database connection the watchdog's HTTP endpoints share.

A scrape or a health probe used to open a connection of its own, on a server that starts a thread per
request: a burst of probes meant a burst of connections. Requests now take turns on one connection,
opened when first needed and opened again after it broke.
"""

import contextlib
import threading

import psycopg

from common.store.connect import close_quietly, connect


class SharedConnection:
    def __init__(self, url, application_name, timeouts):
        self.url, self.application_name, self.timeouts = url, application_name, timeouts
        self.lock = threading.Lock()
        self.conn = None

    @contextlib.contextmanager
    def session(self):
        """The connection, to this request alone until the block ends; dropped if it failed."""
        with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.url, autocommit=True, application_name=self.application_name,
                                    timeouts=self.timeouts)
            try:
                yield self.conn
            except psycopg.Error:
                self.close()
                raise

    def close(self):
        close_quietly(self.conn)
        self.conn = None
