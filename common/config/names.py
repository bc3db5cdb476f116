"""How bots and their processes are named: the one place each naming rule is written."""

import os
import re
import socket

NAME_PART = re.compile(r"^[a-z0-9_]+$")
# Bot names double as supervisord program names, PGAPPNAME and NOTIFY channels (63 bytes max).
MAX_BOT_NAME_BYTES = 56


def bot_name(metaservice, ticket_type, state) -> str:
    """The seed's $metaservice-$ticket_type_name-$state_code-$state_name."""
    return f"{metaservice}-{ticket_type}-{state.code}-{state.name}"


def process_names(bot, replicas) -> list[str]:
    """supervisord's names for a bot's processes: the bot name, or bot-0 .. bot-N-1 for replicas."""
    return [bot] if replicas == 1 else [f"{bot}-{n}" for n in range(replicas)]


# supervisord's process_name for a program with numprocs > 1; must agree with process_names().
REPLICA_PROCESS_NAME = "%(program_name)s-%(process_num)d"


HOST_ENV = "BOTFLEET_HOST"


def hostname() -> str:
    """This host's name in the fleet: $BOTFLEET_HOST, else the machine's. It keys heartbeats, health and
    `hosts:` in fleet.yaml, so a machine whose name changes (a container) should set BOTFLEET_HOST."""
    return os.environ.get(HOST_ENV) or socket.gethostname()
