"""A handler module that takes CPU to import, as a heavy web framework does: a start that a busy host makes slow.

About 1.5 s of the importing process's own CPU time, however long the host takes to give it that much."""

import time

IMPORT_CPU_S = 1.5

_started = time.process_time()
while time.process_time() - _started < IMPORT_CPU_S:
    pass  # the import's work itself


def advance(ticket, ctx):
    return None
