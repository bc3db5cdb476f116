"""Talking to supervisord over its unix socket (XML-RPC), for status, `up --daemon` and `down`."""

import http.client
import socket
import xmlrpc.client

from common.errors import BotfleetError
from common.fleet.wait import wait_until

# supervisord's process states (supervisor/states.py), by name.
RUNNING = "RUNNING"

# How long one call waits for supervisord to answer, unless the caller says otherwise. supervisord answers
# in milliseconds; one that accepts the connection and then says nothing (stopped with SIGSTOP, stuck in a
# slow fork) must not hold its caller for ever. Calls that wait for a process to start or stop pass more.
RPC_TIMEOUT_S = 10.0


class _UnixSocketConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, with the timeout on the connect and on every read."""

    def __init__(self, socket_path, timeout_s: float):
        super().__init__("localhost", timeout=timeout_s)
        self.socket_path = str(socket_path)

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _UnixSocketTransport(xmlrpc.client.Transport):
    # supervisor.xmlrpc.SupervisorTransport talks to the socket without any timeout: a call to a supervisord
    # that does not answer would wait for ever.
    def __init__(self, socket_path, timeout_s: float):
        super().__init__()
        self.socket_path, self.timeout_s = socket_path, timeout_s

    def make_connection(self, host):
        if self._connection[1] is None:  # kept for the next call, as the standard transport does
            self._connection = host, _UnixSocketConnection(self.socket_path, self.timeout_s)
        return self._connection[1]


def client(socket_path, timeout_s: float = RPC_TIMEOUT_S) -> xmlrpc.client.ServerProxy:
    """A proxy whose every call raises TimeoutError (an OSError) when supervisord says nothing for `timeout_s`."""
    # The URL's host is ignored: the transport always talks to the unix socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1/RPC2", transport=_UnixSocketTransport(socket_path, timeout_s))


def process_states(socket_path, timeout_s: float = RPC_TIMEOUT_S) -> dict | None:
    """Program/process name -> state name (RUNNING, FATAL, ...); None when supervisord does not answer."""
    try:
        infos = client(socket_path, timeout_s).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    return {info["name"]: info["statename"] for info in infos}


def wait_running(socket_path, expected: set, timeout_s: float, *, failed_says: str, log_dir) -> None:
    """Until every process in `expected` is RUNNING; a BotfleetError naming those of them that failed to start
    (FATAL or EXITED) instead, after `failed_says`, or the timeout."""
    def all_running():
        states = process_states(socket_path) or {}
        failed = sorted(name for name in expected if states.get(name) in ("FATAL", "EXITED"))
        if failed:
            raise BotfleetError(f"{failed_says}, {len(failed)} process(es) failed to start: {', '.join(failed)}; "
                                f"see {log_dir}/<name>.log")
        return all(states.get(name) == RUNNING for name in expected)

    try:
        wait_until(all_running, timeout_s, "every process to be RUNNING")
    except TimeoutError as exc:
        raise BotfleetError(str(exc)) from None
