"""Talking to supervisord over its unix socket (XML-RPC), for status, `up --daemon` and `down`."""

import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport

# supervisord's process states (supervisor/states.py), by name.
RUNNING = "RUNNING"


def client(socket_path) -> xmlrpc.client.ServerProxy:
    # The URL's host is ignored: the transport always talks to the unix socket.
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def process_states(socket_path) -> dict | None:
    """Program/process name -> state name (RUNNING, FATAL, ...); None when supervisord does not answer."""
    try:
        infos = client(socket_path).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    return {info["name"]: info["statename"] for info in infos}
