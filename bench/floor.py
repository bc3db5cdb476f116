"""The floor under two bench figures: the same paths done by bare psycopg, with no botfleet code timed.

hop_floor: a sender commits a durable single-row UPDATE plus pg_notify, as a bot's outcome write
does; a listener wakes on a LISTEN connection and runs one claim-like UPDATE ... FOR UPDATE SKIP
LOCKED on a connection of its own, as a bot's claim does. The hop runs from the sender's commit to
the claim's answer, measured with the clocks the botfleet hop uses. Whatever botfleet's hop takes
beyond this is botfleet's own: its loop, its thread handoffs, its wider statements.

rss floor: a bare interpreter that imports psycopg and holds one connection, idle.

The runner (bench/run.py) calls these while the bots are stopped and prints the figures.
"""

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import psycopg

from tests.harness import wait_until

TABLE = "bench_floor"
CHANNEL = "bench_floor"
LISTEN_WAIT_S = 0.5  # one notifies() wait; between waits the listener checks whether to stop
CONNECT_TIMEOUT_S = 5
HOPS_TIMEOUT_S = 30  # for the last claims after the last send
LISTENER_STOP_TIMEOUT_S = 5
READY_TIMEOUT_S = 15  # a cold interpreter importing psycopg on a busy VM
PROCESS_STOP_TIMEOUT_S = 5
STATEMENT_TIMEOUT = "SET statement_timeout = '10s'"  # so that no floor statement can hang

# Ticket-like rows: the sender moves row i from state 0 into state 1 and makes it due, the claim takes
# the oldest due row of state 1 through a partial index, as the tickets table's claim index serves it.
CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
    id bigint PRIMARY KEY,
    state int NOT NULL,
    step int NOT NULL DEFAULT 0,
    state_entered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    due_at timestamptz NOT NULL DEFAULT 'infinity',
    lease_owner text,
    lease_expires_at timestamptz,
    closed_at timestamptz
)"""
CREATE_INDEX = f"CREATE INDEX {TABLE}_claim ON {TABLE} (state, due_at) WHERE closed_at IS NULL"
FILL = f"INSERT INTO {TABLE} (id, state) SELECT g, 0 FROM generate_series(1, %(n)s) g"

# One statement in autocommit is one transaction, as APPLY_OUTCOMES is; its commit waits for the
# disk. xmin of the new row version is this transaction's id: its commit timestamp is read after
# the run, since the claim's UPDATE replaces the row version (and its xmin) straight away.
SEND = f"""
WITH u AS (
    UPDATE {TABLE} SET state = 1, step = step + 1, state_entered_at = clock_timestamp(), due_at = now(),
                       lease_owner = NULL, lease_expires_at = NULL
    WHERE id = %(id)s AND state = 0
    RETURNING xmin::text AS xid, extract(epoch FROM state_entered_at)::float8 AS entered_s
)
SELECT u.xid, u.entered_s, pg_notify(%(channel)s, '') FROM u
"""

CLAIM = f"""
UPDATE {TABLE} SET lease_owner = 'floor', lease_expires_at = now() + interval '30 seconds',
                   due_at = now() + interval '30 seconds'
WHERE id = (SELECT id FROM {TABLE} WHERE state = 1 AND closed_at IS NULL AND due_at <= now()
            ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""

COMMIT_TIMES = """
SELECT x.id, extract(epoch FROM pg_xact_commit_timestamp(x.xid::xid))::float8 AS committed_s
FROM unnest(%(ids)s::bigint[], %(xids)s::text[]) AS x(id, xid)
"""


def bare_connection(url, name, session_setup=None):
    """psycopg's own connect, tuple rows, autocommit: nothing of botfleet's connection code."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=name)
    if session_setup:
        conn.execute(session_setup)
    return conn


# -- hop floor ---------------------------------------------------------------------------------------


@contextmanager
def scratch_table(url, rows):
    """The floor's table of `rows` ticket-like rows in state 0, for the time of the run."""
    with bare_connection(url, "bench-floor-admin") as conn:
        conn.execute(CREATE_TABLE)
        conn.execute(CREATE_INDEX)
        conn.execute(FILL, {"n": rows})
        conn.execute(f"ANALYZE {TABLE}")
        try:
            yield
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


class Listener(threading.Thread):
    """On every notification, one claim: claimed_s = {row id: time.time() once the claim returned}."""

    def __init__(self, listen_conn, claim_conn):
        # A daemon, so that a claim stuck past every deadline cannot hold the benchmark's exit.
        super().__init__(name="bench-floor-listen", daemon=True)
        self.listen_conn, self.claim_conn = listen_conn, claim_conn
        self.claimed_s = {}
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                for _ in self.listen_conn.notifies(timeout=LISTEN_WAIT_S):
                    self.claim()
        except Exception as exc:
            self.error = exc

    def claim(self):
        # Prepared from the first run: a bot's claim is prepared too (psycopg prepares on the 5th).
        cur = self.claim_conn.execute(CLAIM, prepare=True)
        claimed_at_s = time.time()
        row = cur.fetchone()
        if row:
            self.claimed_s[row[0]] = claimed_at_s

    def check(self):
        """Raise if the listener failed or ended; False otherwise, for wait_until."""
        if self.error is not None:
            raise RuntimeError("the floor listener failed") from self.error
        if not self.is_alive():
            raise RuntimeError("the floor listener stopped early")
        return False

    def stop(self):
        self.stopping.set()
        self.join(timeout=LISTENER_STOP_TIMEOUT_S)  # a notifies() wait ends within LISTEN_WAIT_S
        if self.is_alive():
            raise TimeoutError(f"the floor listener did not stop within {LISTENER_STOP_TIMEOUT_S}s")
        if self.error is not None:
            raise RuntimeError("the floor listener failed") from self.error


def send_spaced(conn, count, spacing_s):
    """Commit `count` sends `spacing_s` apart: {row id: (transaction id, state_entered_at in epoch s)}."""
    sent = {}
    start = time.monotonic()
    for i in range(count):
        # Spaced like the botfleet latency run: a listener woken from idle costs far more than a tight loop.
        pause_s = start + i * spacing_s - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        row = conn.execute(SEND, {"id": i + 1, "channel": CHANNEL}, prepare=True).fetchone()
        sent[i + 1] = (row[0], row[1])
    return sent


def sent_times_s(conn, sent, commit_timestamps):
    """Each send's start, as the botfleet hop takes it: the commit timestamp, else clock_timestamp()."""
    if not commit_timestamps:
        return {row_id: entered_s for row_id, (_, entered_s) in sent.items()}
    rows = conn.execute(COMMIT_TIMES, {"ids": list(sent), "xids": [xid for xid, _ in sent.values()]}).fetchall()
    if any(committed_s is None for _, committed_s in rows):
        raise RuntimeError("a floor send has no commit timestamp")
    return dict(rows)


def hop_floor_ms(url, count, spacing_s, commit_timestamps):
    """`count` bare hops, `spacing_s` apart, in a scratch table: the list of hop times in ms."""
    # The claim connection is set up like a bot's work connection (BOT_SESSION_SETUP): a claim commits
    # without waiting for the disk, and the index serves it however small the table is.
    claim_setup = f"{STATEMENT_TIMEOUT}; SET synchronous_commit = off; SET enable_seqscan = off"
    with (scratch_table(url, count),
          bare_connection(url, "bench-floor-send", f"{STATEMENT_TIMEOUT}; SET synchronous_commit = on") as send_conn,
          bare_connection(url, "bench-floor-listen") as listen_conn,
          bare_connection(url, "bench-floor-claim", claim_setup) as claim_conn):
        listen_conn.execute(f'LISTEN "{CHANNEL}"')  # before any send, so no notification is missed
        listener = Listener(listen_conn, claim_conn)
        listener.start()
        try:
            sent = send_spaced(send_conn, count, spacing_s)
            wait_until(lambda: listener.check() or len(listener.claimed_s) >= count, HOPS_TIMEOUT_S,
                       lambda: f"the floor listener to claim {count} rows (claimed {len(listener.claimed_s)})")
        finally:
            listener.stop()
        started_s = sent_times_s(send_conn, sent, commit_timestamps)
    return [(listener.claimed_s[row_id] - started_s[row_id]) * 1000 for row_id in sent]


# -- RSS floor ---------------------------------------------------------------------------------------

# The child process: nothing but the interpreter, psycopg and one open connection. It says when it
# is connected, then idles until its stdin closes.
IDLE_CHILD = """
import os, sys
import psycopg
conn = psycopg.connect(os.environ["BENCH_FLOOR_URL"], connect_timeout=5, application_name="bench-floor-rss")
print("ready", flush=True)
sys.stdin.read()
"""


@contextmanager
def idle_connected_process(url, log_path):
    """Run a bare interpreter holding one psycopg connection to `url`; yield its pid once connected."""
    # The URL goes in the environment, not argv, where `ps` would show a password.
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", IDLE_CHILD], stdin=subprocess.PIPE, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "BENCH_FLOOR_URL": url})
    try:
        wait_until(lambda: child_ready(proc, log_path), READY_TIMEOUT_S, "the bare psycopg process to connect")
        yield proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=PROCESS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=PROCESS_STOP_TIMEOUT_S)


def child_ready(proc, log_path):
    if proc.poll() is not None:
        raise RuntimeError(f"the bare psycopg process exited with code {proc.returncode}:\n"
                           f"{log_path.read_text(errors='replace')[-2000:]}")
    return "ready" in log_path.read_text(errors="replace")
