"""A handler module that imports at once for `config check` and `up`, and hangs as it is imported under supervisord:
its bot runs but never registers (tests of a start that does not become ready)."""

import os
import time

if os.environ.get("SUPERVISOR_PROCESS_NAME"):  # set by supervisord for its programs only
    time.sleep(3600)  # longer than any test: the bot is stopped (SIGTERM) before


def advance(ticket, ctx):
    return None
