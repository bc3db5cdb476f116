"""What the tests of bots that talk to other servers watch: a server that accepts and never answers, a
bot's heartbeat age, and how long its database connection has sat in an open transaction."""

import socket
import threading


class SilentServer:
    """A TCP server on 127.0.0.1:`port` that accepts every connection and never sends a byte: an SMTP
    server or a webhook receiver that hangs. `accepted` counts the connections, i.e. the tries."""

    ACCEPT_POLL_S = 0.1  # how soon stop() is noticed by the accepting thread

    def __init__(self, port):
        self.port = port
        self.accepted = 0
        self._held = []
        self._stopping = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(self.ACCEPT_POLL_S)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                held, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(held)
            self.accepted += 1

    def stop(self):
        """Close the port and every connection, so that a real server can take the port."""
        self._stopping.set()
        self._thread.join()
        self._sock.close()
        for held in self._held:
            held.close()


def heartbeat_age_s(conn, bot) -> float | None:
    """Real seconds since the newest heartbeat of the bot's live processes (None: none registered)."""
    return conn.execute("""SELECT extract(epoch FROM clock_timestamp() - max(heartbeat_at))::float8 AS age_s
                           FROM bot_processes WHERE bot_name = %s AND stopped_at IS NULL""", (bot,)).fetchone()["age_s"]


def idle_in_transaction_s(conn, bot) -> float:
    """The longest a connection of the bot's has now sat in a transaction waiting for its client (0: none)."""
    return conn.execute("""SELECT coalesce(max(extract(epoch FROM clock_timestamp() - state_change)), 0)::float8 AS s
                           FROM pg_stat_activity
                           WHERE datname = current_database() AND application_name LIKE %s
                             AND state LIKE 'idle in transaction%%'""", (bot + "%",)).fetchone()["s"]
