"""Benchmark handlers: move the ticket on at once; for latency tickets, log when the handler started.

The runner turns each line into a hop: this start time minus the commit time of the transition into
the state (or, on a server without commit timestamps, minus state_entered_at, also logged here
because the next transition overwrites it). Only tickets whose payload says {"latency": true} are
logged, so the throughput run pays nothing.
"""

import os
import threading
import time

_lock = threading.Lock()
_out = None


def _log_line(line):
    global _out
    with _lock:
        if _out is None:
            folder = os.environ["BENCH_LATENCY_DIR"]
            _out = open(os.path.join(folder, f"hops-{os.getpid()}.txt"), "a", buffering=1)
        # Line-buffered so the runner can read the file while the bot is still up; latency tickets
        # arrive ~20 ms apart, so one small write per ticket costs nothing measurable.
        _out.write(line)


def step(ticket, ctx):
    started_s = time.time()  # first, so the hop ends where the handler starts
    if ticket.payload.get("latency"):
        entered_s = ticket.state_entered_at.timestamp()
        _log_line(f"{ticket.id} {ticket.state} {started_s:.6f} {entered_s:.6f}\n")
    return None  # the normal next state
