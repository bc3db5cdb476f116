"""A process of the fleet (a bot's, the API's) as bot_processes knows it: named, registered, heartbeating."""

import os
import secrets

from common import __version__
from common.config.names import hostname
from common.store import sql


def process_owner(bot: str) -> str:
    """This process's instance id: the lease owner of what it claims, unique across restarts and hosts."""
    return f"{bot}@{hostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def register_process(conn, bot: str, owner: str) -> list[str]:
    """Register this process of `bot`, in the caller's transaction; returns the instance ids of the
    predecessors it replaces (the same supervisord process on this host), which are dead now."""
    conn.execute(sql.PRUNE_PROCESSES, {"bot": bot})
    return conn.execute(sql.REGISTER_PROCESS, {
        "owner": owner, "bot": bot, "host": hostname(), "pid": os.getpid(), "version": __version__,
        "process_name": os.environ.get("SUPERVISOR_PROCESS_NAME"),
    }).fetchone()["predecessors"]
