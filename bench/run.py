"""botfleet benchmark: real bot processes on a real PostgreSQL, its figures as name=value lines.

    .venv/bin/python bench/run.py [--quick]

Starts its own embedded PostgreSQL in a temp dir (or uses BENCH_DATABASE_URL, where it creates and
later drops a scratch database), runs a 3-state pipeline bench/pipe (1 a -> 2 b -> 3 c, final) with
one `botfleet bot run` process per state, and measures throughput, hop and end-to-end latency, the
cost of one sweep over a big table, and a bot's memory. For the hop and the memory it also measures
the floor, the same path done by bare psycopg (bench/floor.py), and how many times that botfleet takes.
See bench/README.md for what each figure means.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import api, console, floor, idle, pipeline  # noqa: E402
from common.config.load import load  # noqa: E402
from common.store import sql  # noqa: E402
from common.store.connect import connect
from common.store.migrate import upgrade
from common.store.server import start_embedded, stop_embedded
from common.tickets.claim import claim_timed_out, get_current_ticket_list
from common.tickets.create import create_ticket, create_tickets
from common.tickets.timers import PURGE_BATCH, purge_closed, send_due_rounds
from tests.harness import BotProcesses, percentile, wait_until, with_dbname  # noqa: E402

METASERVICE, TICKET_TYPE = "bench", pipeline.TICKET_TYPE
BOTS = pipeline.bot_names(METASERVICE)
SIZES = {
    "full": {"idle_s": 60, "burst": 5000, "latency": 300, "closed": 1_000_000, "open": 10_000, "remind_open": 100_000,
             "purge_batches": 50, "api_creates": 10_000, "api_gets": 2_000, "worker_asks": 2_000,
             "console_requests": 200},
    "quick": {"idle_s": 20, "burst": 1000, "latency": 100, "closed": 100_000, "open": 1_000, "remind_open": 10_000,
              "purge_batches": 10, "api_creates": 2_000, "api_gets": 500, "worker_asks": 500,
              "console_requests": 50},
}
LATENCY_SPACING_S = 0.020
SWEEP_DUE = 10  # tickets due in the "a little due" sweep
REMINDERS_DUE = 500  # acceptance rounds due, and as many lifetime timeouts (1,000 due), in the reminder sweep
SWEEP_WARMUP_RUNS = 6  # psycopg prepares a statement on its 5th run; bots run prepared statements
SWEEP_RUNS = 15
# Deadlines: nothing here waits without one.
REGISTER_TIMEOUT_S = 30
BURST_TIMEOUT_S = 180
LATENCY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
STATEMENT_TIMEOUT = "600s"
OVERALL_TIMEOUT_S = 1800


def say(message):
    print(message, flush=True)


# -- setup -------------------------------------------------------------------------------------------


def write_config(root: Path):
    # Bots keep the shipped defaults (4 threads, batch 32): the figures are for an untuned fleet.
    pipeline.write_config(root, METASERVICE,
                          "heartbeat_interval: 2s\nmetaservices:\n  bench: {description: benchmark pipeline}\n",
                          "bench.handlers:step")


def start_embedded_with_commit_timestamps(pgdata):
    """Start the embedded server with track_commit_timestamp on: hops then start at the real commit.

    The setting only takes effect at server start, so the server is started, set and restarted.
    """
    url = start_embedded(pgdata)
    with connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    stop_embedded(pgdata)
    return start_embedded(pgdata)


LATENCY_METHODS = {
    True: "commit timestamps (pg_xact_commit_timestamp of the ticket_events rows)",
    False: "state_entered_at, and closed_at - created_at: track_commit_timestamp is off on this server, "
           "so the hops start, and e2e ends, before the commit",
}


def has_commit_timestamps(conn):
    return conn.execute("SHOW track_commit_timestamp").fetchone()["track_commit_timestamp"] == "on"


def bench_connection(url):
    conn = connect(url, autocommit=True, application_name="bench")
    conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    return conn


# -- bot processes -----------------------------------------------------------------------------------


def start_bots(cfg_dir, url, tmp) -> dict:
    procs = BotProcesses(tmp)
    return {name: procs.start(name, cfg_dir, url, {"BENCH_LATENCY_DIR": str(tmp / "hops")}) for name in BOTS}


def check_alive(procs):
    for name, proc in procs.items():
        if proc.poll() is not None:
            tail = proc.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"bot {name} exited with code {proc.returncode}:\n{tail}")


def wait_swept(conn, procs):
    """Until every bot has registered and run its loop once (first heartbeat comes after the first sweep)."""
    def swept():
        check_alive(procs)
        rows = conn.execute("SELECT bot_name, heartbeat_at > started_at AS looped FROM bot_processes "
                            "WHERE stopped_at IS NULL").fetchall()
        return {r["bot_name"] for r in rows} >= set(BOTS) and all(r["looped"] for r in rows)
    wait_until(swept, REGISTER_TIMEOUT_S, "every bot registered and swept once")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop_bots(procs):
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- measurements ------------------------------------------------------------------------------------


def wait_closed(conn, ids, timeout_s, procs, progress=False):
    last_print = [time.monotonic()]

    def all_closed():
        # The partial claim index serves this count; every earlier bench ticket is already closed.
        open_count = conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = %s AND ticket_type = %s "
                                  "AND closed_at IS NULL", (METASERVICE, TICKET_TYPE)).fetchone()["n"]
        check_alive(procs)
        if progress and open_count and time.monotonic() - last_print[0] >= 1:
            say(f"  {len(ids) - open_count} of {len(ids)} closed")
            last_print[0] = time.monotonic()
        return open_count == 0
    wait_until(all_closed, timeout_s, f"all {len(ids)} tickets to close")


def measure_throughput(conn, cfg, count, procs, tmp):
    say(f"throughput: creating {count} tickets in one transaction")
    ids = create_tickets(conn, cfg, METASERVICE, TICKET_TYPE, [{} for _ in range(count)], creator="bench")
    created_s = time.time()
    wait_closed(conn, ids, BURST_TIMEOUT_S, procs, progress=True)
    row = conn.execute("SELECT extract(epoch FROM max(closed_at)) AS last_close_s FROM tickets WHERE id = ANY(%s)",
                       (ids,)).fetchone()
    transitions = conn.execute("SELECT count(*) AS n FROM ticket_events WHERE ticket_id = ANY(%s) "
                               "AND kind = 'transitioned'", (ids,)).fetchone()["n"]
    elapsed_s = float(row["last_close_s"]) - created_s
    say(f"  {transitions} transitions in {elapsed_s:.2f}s after the create committed")
    return transitions / elapsed_s


def read_handler_starts(tmp, ids):
    """{(ticket id, state): (handler start, state_entered_at)} in epoch seconds, from the handlers' logs."""
    wanted, starts = set(ids), {}
    for path in (tmp / "hops").glob("hops-*.txt"):
        for line in path.read_text().splitlines():
            ticket_id, state, started_s, entered_s = line.split()
            if int(ticket_id) in wanted:
                starts[(int(ticket_id), int(state))] = (float(started_s), float(entered_s))
    if len(starts) != 2 * len(ids):
        raise RuntimeError(f"expected {2 * len(ids)} hop records, found {len(starts)}")
    return starts


def commit_times_s(conn, ids):
    """Commit times (epoch s) of the tickets' events: {(ticket id, state entered): s}, {ticket id: closed s}.

    A 'created' event enters the initial state, a 'transitioned' one its to_state; the 'closed' event
    is written in the same transaction as the transition into the final state.
    """
    rows = conn.execute("""
        SELECT ticket_id, kind, to_state, extract(epoch FROM pg_xact_commit_timestamp(xmin)) AS committed_s
        FROM ticket_events WHERE ticket_id = ANY(%s) AND kind IN ('created', 'transitioned', 'closed')
    """, (ids,)).fetchall()
    if any(r["committed_s"] is None for r in rows):
        raise RuntimeError("an event has no commit timestamp: was track_commit_timestamp on before it committed?")
    entered_s = {(r["ticket_id"], r["to_state"]): float(r["committed_s"]) for r in rows if r["kind"] != "closed"}
    closed_s = {r["ticket_id"]: float(r["committed_s"]) for r in rows if r["kind"] == "closed"}
    return entered_s, closed_s


def measure_latency(conn, cfg, count, procs, tmp, commit_timestamps):
    say(f"latency: creating {count} tickets one at a time, {LATENCY_SPACING_S * 1000:.0f} ms apart")
    ids = []
    start = time.monotonic()
    for i in range(count):
        pause_s = start + i * LATENCY_SPACING_S - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        ids.append(create_ticket(conn, cfg, METASERVICE, TICKET_TYPE, {"latency": True}, creator="bench"))
    wait_closed(conn, ids, LATENCY_TIMEOUT_S, procs)
    handler_starts = read_handler_starts(tmp, ids)
    initial = cfg.ticket_type(METASERVICE, TICKET_TYPE).initial
    if commit_timestamps:
        entered_s, closed_s = commit_times_s(conn, ids)
        hops_ms = {key: (started_s - entered_s[key]) * 1000 for key, (started_s, _) in handler_starts.items()}
        e2e_ms = [(closed_s[i] - entered_s[(i, initial)]) * 1000 for i in ids]
    else:
        # state_entered_at, created_at and closed_at are read from the one clock inside the statements
        # that commit them: all of them come before the commit.
        hops_ms = {key: (started_s - state_entered_s) * 1000
                   for key, (started_s, state_entered_s) in handler_starts.items()}
        e2e_ms = [float(r["ms"]) for r in conn.execute(
            "SELECT extract(epoch FROM closed_at - created_at) * 1000 AS ms FROM tickets WHERE id = ANY(%s)",
            (ids,)).fetchall()]
    hops = list(hops_ms.values())
    say(f"  hops: n={len(hops)} min={min(hops):.2f} p50={percentile(hops, .5):.2f} "
        f"p90={percentile(hops, .9):.2f} p99={percentile(hops, .99):.2f} max={max(hops):.2f} ms")
    # Into state 1 the commit is the creator's, into state 2 a bot's outcome write: both are hops.
    by_state = {}
    for (_, state), hop_ms in hops_ms.items():
        by_state.setdefault(state, []).append(hop_ms)
    say("  hop p50 by state entered: " + ", ".join(f"{state}: {percentile(v, .5):.2f} ms"
                                                  for state, v in sorted(by_state.items())))
    say(f"  end to end: p50={percentile(e2e_ms, .5):.2f} p99={percentile(e2e_ms, .99):.2f} ms")
    return percentile(hops, .5), percentile(hops, .99), percentile(e2e_ms, .5)


def fill_sweep_table(conn, closed, open_):
    """`closed` closed tickets and `open_` open ones over 4 types x 2 states of metaservice 'sweep'."""
    say(f"sweep: inserting {closed} closed and {open_} open tickets")
    started = time.monotonic()
    conn.execute("""
        INSERT INTO tickets (metaservice, ticket_type, state, payload, creator, created_at, state_entered_at,
                             deadline_at, next_reminder_at, due_at, step, closed_at)
        SELECT 'sweep', 't' || (g %% 4), 3, '{"n": 1}', 'bench', c - interval '1 hour', c - interval '1 minute',
               c + interval '1 hour', c + interval '1 hour', c, 2, c
        FROM generate_series(1, %(n)s) g, LATERAL (SELECT now() - g * interval '1 second' AS c) t
    """, {"n": closed})
    # Open tickets wait for a time spread over the hour after next: nothing is due until set_due() says so,
    # however long the inserts take (they fall due on their own when the spread starts at now()).
    conn.execute("""
        INSERT INTO tickets (metaservice, ticket_type, state, payload, creator, created_at, state_entered_at,
                             deadline_at, next_reminder_at, due_at, step)
        SELECT 'sweep', 't' || (g %% 4), 1 + (g / 4) %% 2, '{"n": 1}', 'bench', now(), now(),
               now() + interval '2 hours', now() + interval '2 hours',
               now() + interval '1 hour' + (g %% 3600 + 1) * interval '1 second', 1
        FROM generate_series(1, %(n)s) g
    """, {"n": open_})
    say(f"  inserted in {time.monotonic() - started:.1f}s; VACUUM ANALYZE")
    started = time.monotonic()
    conn.execute("VACUUM ANALYZE tickets")
    say(f"  vacuumed in {time.monotonic() - started:.1f}s")


def set_due(conn, ticket_type, state, count):
    """Make `count` tickets of one state due now (and unleased), as they were before a claim took them."""
    conn.execute("""
        UPDATE tickets SET due_at = now(), lease_owner = NULL, lease_expires_at = NULL
        WHERE id IN (SELECT id FROM tickets WHERE metaservice = 'sweep' AND ticket_type = %s AND state = %s
                     AND closed_at IS NULL ORDER BY id LIMIT %s)
    """, (ticket_type, state, count))


def sweep_ms(bot_conn, admin_conn, ticket_type, state, due):
    """Median time of one sweep step, the way a bot's _sweep does it: CLAIM, then NEXT_DUE."""
    spec = SimpleNamespace(metaservice="sweep", ticket_type=ticket_type, state=state, lease_s=30.0)
    params = {"metaservice": "sweep", "ticket_type": ticket_type, "state": state}
    times_ms = []
    for run in range(SWEEP_WARMUP_RUNS + SWEEP_RUNS):
        if due:
            set_due(admin_conn, ticket_type, state, due)
        started = time.perf_counter()
        claimed = get_current_ticket_list(bot_conn, spec, "bench-sweep", 32)
        bot_conn.execute(sql.NEXT_DUE, params).fetchone()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if len(claimed) != due:
            raise RuntimeError(f"sweep claimed {len(claimed)} tickets, expected {due}")
        if run >= SWEEP_WARMUP_RUNS:
            times_ms.append(elapsed_ms)
    return percentile(times_ms, .5)


def measure_sweep(url, closed, open_):
    with bench_connection(url) as admin, connect(url, autocommit=True, application_name="bench-sweep") as bot:
        fill_sweep_table(admin, closed, open_)
        bot.execute(sql.BOT_SESSION_SETUP)
        bot.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        idle_ms = sweep_ms(bot, admin, "t1", 1, 0)
        busy_ms = sweep_ms(bot, admin, "t0", 1, SWEEP_DUE)
    say(f"  sweep step: {idle_ms:.2f} ms with nothing due, {busy_ms:.2f} ms with {SWEEP_DUE} due (medians)")
    return max(idle_ms, busy_ms)


def fill_reminder_table(conn, open_, due):
    """`open_` open tickets of metaservice 'remind' for a group of three, waiting in one state: `due` of them with
    an acceptance round due, as many past their deadline, the rest with both an hour or more away."""
    conn.execute("INSERT INTO users (name) SELECT 'bench-' || g FROM generate_series(1, 3) g ON CONFLICT DO NOTHING")
    conn.execute("INSERT INTO groups (name) VALUES ('bench') ON CONFLICT DO NOTHING")
    conn.execute("INSERT INTO group_members (group_name, user_name) SELECT 'bench', 'bench-' || g "
                 "FROM generate_series(1, 3) g ON CONFLICT DO NOTHING")
    conn.execute("""
        INSERT INTO tickets (metaservice, ticket_type, state, payload, creator, group_role, created_at, state_entered_at,
                             deadline_at, next_reminder_at, due_at, step)
        SELECT 'remind', 'r', 1, '{"n": 1}', 'bench', 'bench', now(), now(),
               CASE WHEN g <= 2 * %(due)s AND g > %(due)s THEN now() - interval '1 second' ELSE now() + interval '3 hours' END,
               CASE WHEN g <= %(due)s THEN now() - interval '1 second'
                    ELSE now() + interval '1 hour' + (g %% 3600) * interval '1 second' END,
               now() + interval '1 hour' + (g %% 3600) * interval '1 second', 1
        FROM generate_series(1, %(n)s) g
    """, {"n": open_, "due": due})
    conn.execute("VACUUM ANALYZE tickets")


def measure_reminder_sweep(url, open_, due):
    """Median time of what a bot's timers do at each sweep, on the big table plus `open_` open tickets of one
    state: send the `due` acceptance rounds due, claim the `due` timed-out tickets, clear nothing past the
    retention, and find when the next is due. Each run is rolled back, so every run finds the same."""
    spec = SimpleNamespace(metaservice="remind", ticket_type="r", state=1, lease_s=30.0, name="remind-r-1-a")
    kind = SimpleNamespace(notification_frequency_s=900.0, retention_s=86400.0, on_retention="delete",
                           retention_for=lambda state: 86400.0)
    params = {"metaservice": "remind", "ticket_type": "r", "state": 1}
    with bench_connection(url) as admin, connect(url, application_name="bench-remind") as bot:
        say(f"reminder sweep: {open_} open tickets in one state, {due} rounds and {due} timeouts due")
        fill_reminder_table(admin, open_, due)
        bot.execute(sql.BOT_SESSION_SETUP)
        bot.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        bot.commit()
        times_ms = []
        for run in range(SWEEP_WARMUP_RUNS + SWEEP_RUNS):
            started = time.perf_counter()
            rounds = send_due_rounds(bot, spec, kind, spec.name)
            timed_out = claim_timed_out(bot, spec, "bench-remind", 2 * due)
            purge_closed(bot, spec, kind)
            bot.execute(sql.NEXT_DUE, params).fetchone()
            elapsed_ms = (time.perf_counter() - started) * 1000
            bot.rollback()
            if (rounds, len(timed_out)) != (due, due):
                raise RuntimeError(f"reminder sweep sent {rounds} rounds and claimed {len(timed_out)} timeouts, "
                                   f"expected {due} of each")
            if run >= SWEEP_WARMUP_RUNS:
                times_ms.append(elapsed_ms)
        floor_ms = reminder_writes_floor_ms(bot, due)
    say(f"  reminder sweep: {percentile(times_ms, .5):.2f} ms (median), {3 * due} notifications per run; "
        f"the same writes in bare SQL: {floor_ms:.2f} ms")
    return percentile(times_ms, .5), floor_ms


def reminder_writes_floor_ms(conn, due):
    """The floor of the reminder sweep: the rows it writes (the rounds' ticket updates, their notifications and
    events, the timeouts' leases), by ids known in advance, in plain statements with nothing to find, lock,
    format or check. Median of rolled-back runs, as the sweep's."""
    rounds = [r["id"] for r in conn.execute("SELECT id FROM tickets WHERE metaservice = 'remind' "
                                            "AND next_reminder_at < deadline_at AND next_reminder_at <= now()")]
    timeouts = [r["id"] for r in conn.execute("SELECT id FROM tickets WHERE metaservice = 'remind' "
                                              "AND deadline_at <= now()")]
    if (len(rounds), len(timeouts)) != (due, due):
        raise RuntimeError(f"reminder floor found {len(rounds)} rounds and {len(timeouts)} timeouts, expected {due}")
    conn.rollback()
    times_ms = []
    for run in range(SWEEP_WARMUP_RUNS + SWEEP_RUNS):
        started = time.perf_counter()
        conn.execute("UPDATE tickets SET next_reminder_at = next_reminder_at + interval '15 minutes' "
                     "WHERE id = ANY(%s)", (rounds,))
        conn.execute("INSERT INTO notifications (user_name, ticket_id, kind, text, email_state, email_due_at) "
                     "SELECT 'bench-' || u, i, 'acceptance', 'Ticket ' || i || ' waits for someone to accept it', "
                     "'none', now() FROM unnest(%s::bigint[]) i, generate_series(1, 3) u", (rounds,))
        conn.execute("INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail, at) "
                     "SELECT i, 1, 'reminder', 1, 1, 'bench', '{}', now() FROM unnest(%s::bigint[]) i", (rounds,))
        conn.execute("UPDATE tickets SET lease_owner = 'bench', lease_expires_at = now() + interval '30 seconds', "
                     "due_at = now() + interval '30 seconds' WHERE id = ANY(%s)", (timeouts,))
        elapsed_ms = (time.perf_counter() - started) * 1000
        conn.rollback()
        if run >= SWEEP_WARMUP_RUNS:
            times_ms.append(elapsed_ms)
    return percentile(times_ms, .5)


def measure_purge(url, batches):
    """Retention on the sweep table's million closed tickets: `batches` batches of PURGE_CLOSED, as a state's bot
    runs them (archiving, the costlier way). Each batch is one transaction, and the longest one is the longest
    any row lock is held; returns (median batch ms, longest batch ms, tickets removed per second)."""
    spec = SimpleNamespace(metaservice="sweep", ticket_type="t0", state=3)
    params = {"metaservice": "sweep", "ticket_type": "t0", "state": 3, "retention_s": 60.0, "archive": True,
              "limit": PURGE_BATCH}
    with connect(url, autocommit=True, application_name="bench-purge") as bot:
        bot.execute(sql.BOT_SESSION_SETUP)
        times_ms, purged = [], 0
        for _ in range(batches):
            started = time.perf_counter()
            purged += bot.execute(sql.PURGE_CLOSED, params).fetchone()["purged"]
            times_ms.append((time.perf_counter() - started) * 1000)
    say(f"  purge: {purged} closed tickets of {spec.metaservice}/{spec.ticket_type} archived with their events in "
        f"{batches} batches: median {percentile(times_ms, .5):.1f} ms, longest {max(times_ms):.1f} ms")
    return percentile(times_ms, .5), max(times_ms), purged / (sum(times_ms) / 1000)


def measure_hop_floor(url, count, commit_timestamps):
    """The median hop of bare psycopg, spaced and counted like the botfleet latency run."""
    say(f"hop floor: {count} bare psycopg hops (UPDATE + pg_notify, LISTEN, claim), "
        f"{LATENCY_SPACING_S * 1000:.0f} ms apart")
    hops = floor.hop_floor_ms(url, count, LATENCY_SPACING_S, commit_timestamps)
    say(f"  floor hops: n={len(hops)} min={min(hops):.2f} p50={percentile(hops, .5):.2f} "
        f"p90={percentile(hops, .9):.2f} p99={percentile(hops, .99):.2f} max={max(hops):.2f} ms")
    return percentile(hops, .5)


def measure_rss_floor(url, tmp):
    """VmRSS of a bare interpreter holding one psycopg connection: what any bot costs before botfleet."""
    with floor.idle_connected_process(url, tmp / "floor-rss.log") as pid:
        mb = rss_mb(pid)
    say(f"  bare python + psycopg + 1 connection: {mb:.1f} MB RSS")
    return mb


def measure_api(url, tmp, creates, gets, asks):
    """The API process on the same database: creates per second from 16 clients, then GET latency."""
    base_url, token, process = api.start_api(tmp / "api", url, METASERVICE)
    try:
        per_s, ids = api.measure_creates(base_url, token, METASERVICE, creates)
        say(f"  POST /tickets from {api.CLIENTS} keep-alive clients: {creates} in {creates / per_s:.1f} s = "
            f"{per_s:.0f}/s")
        p50, p99 = api.measure_gets(base_url, token, ids, gets)
        say(f"  GET /tickets/{{id}}, {gets} one after another: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        set_per_s = api.measure_set_status(base_url, token, creates)
        say(f"  /status/setStatus from {api.CLIENTS} keep-alive clients: {creates} calls = {set_per_s:.0f}/s")
        next_p50, next_p99 = api.measure_worker_next(base_url, token, METASERVICE, asks)
        say(f"  POST /workers/{{name}}/next, {asks} asks each followed by its finish: p50 {next_p50:.2f} ms, "
            f"p99 {next_p99:.2f} ms")
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT_S)
    return per_s, p50, p99, set_per_s, next_p50


def measure_scrape(url):
    """A watchdog's /metrics body computed on the big sweep table: the median of a few scrapes."""
    from watchdog.collector import scrape_text

    times_ms = []
    for _ in range(SWEEP_RUNS):
        started = time.perf_counter()
        scrape_text(url)
        times_ms.append((time.perf_counter() - started) * 1000)
    say(f"  /metrics scrape with the same table: {percentile(times_ms, .5):.2f} ms (median)")
    return percentile(times_ms, .5)


# -- main --------------------------------------------------------------------------------------------


def on_alarm(signum, frame):
    raise TimeoutError(f"benchmark did not finish within {OVERALL_TIMEOUT_S}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs and a 100k-row sweep table")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_TIMEOUT_S)  # a last resort behind the deadline on every wait

    # Other work on the machine moves every figure; the load average says how busy it was.
    say("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    tmp = Path(tempfile.mkdtemp(prefix="botfleet-bench-"))
    (tmp / "hops").mkdir()
    pgdata = tmp / "pgdata"
    server_url = os.environ.get("BENCH_DATABASE_URL")
    dbname = f"botfleet_bench_{os.getpid()}"
    embedded = not server_url
    procs = {}
    figures = {}
    try:
        if embedded:
            say(f"starting embedded PostgreSQL in {pgdata}, with track_commit_timestamp = on")
            server_url = start_embedded_with_commit_timestamps(pgdata)
        with bench_connection(server_url) as admin:
            commit_timestamps = has_commit_timestamps(admin)
            admin.execute(f'CREATE DATABASE "{dbname}"')
        latency_method = LATENCY_METHODS[commit_timestamps]
        say(f"latency measured from: {latency_method}")
        url = with_dbname(server_url, dbname)
        write_config(tmp / "config")
        cfg = load(tmp / "config")
        upgrade(url, cfg)

        say("starting bots: " + ", ".join(BOTS))
        procs = start_bots(tmp / "config", url, tmp)
        with bench_connection(url) as conn:
            wait_swept(conn, procs)
            rss = {name: rss_mb(proc.pid) for name, proc in procs.items()}
            say("  idle RSS: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in rss.items()))
            figures["bot_rss_mb"] = max(rss.values())

            figures["throughput_per_s"] = measure_throughput(conn, cfg, size["burst"], procs, tmp)
            hop_p50, hop_p99, e2e_p50 = measure_latency(conn, cfg, size["latency"], procs, tmp,
                                                        commit_timestamps)
            figures.update(hop_p50_ms=hop_p50, hop_p99_ms=hop_p99, e2e_p50_ms=e2e_p50)
            say("  RSS after load: " + ", ".join(f"{n} {rss_mb(p.pid):.1f} MB" for n, p in procs.items()))
        stop_bots(procs)  # the floors and the sweep are timed on a quiet server
        # The floors run here, not before the bots start: seconds after the latency run, on the same
        # server with its caches as warm, and with the bots gone nothing else competes for the two
        # cores; and before the sweep's bulk insert and VACUUM, which leave the server writing back.
        figures["hop_floor_ms"] = measure_hop_floor(url, size["latency"], commit_timestamps)
        figures["bot_rss_floor_mb"] = measure_rss_floor(url, tmp)
        (figures["api_create_per_s"], figures["api_get_p50_ms"], figures["api_get_p99_ms"],
         figures["set_status_per_s"], figures["worker_next_p50_ms"]) = measure_api(
            url, tmp, size["api_creates"], size["api_gets"], size["worker_asks"])
        figures["sweep_ms"] = measure_sweep(url, size["closed"], size["open"])
        figures["scrape_ms"] = measure_scrape(url)
        say(f"console pages on the same table ({size['console_requests']} requests each)")
        figures.update(console.measure_pages(url, tmp / "console", size["console_requests"], say))
        figures["reminder_sweep_ms"], figures["reminder_floor_ms"] = measure_reminder_sweep(
            url, size["remind_open"], REMINDERS_DUE)
        figures["purge_batch_ms"], figures["purge_batch_max_ms"], figures["purge_per_s"] = measure_purge(
            url, size["purge_batches"])
        # Last: the quiet fleet on a server the runs above left warm and checkpointed.
        figures.update(idle.measure_idle(server_url, tmp, size["idle_s"], say))
    finally:
        signal.alarm(0)
        stop_bots(procs)
        if embedded:
            stop_embedded(pgdata)  # also a server that a failed setup left running
        elif server_url:
            with bench_connection(server_url) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)

    # How many times the floor botfleet takes (1.00: nothing added over PostgreSQL and psycopg).
    figures["hop_vs_floor"] = figures["hop_p50_ms"] / figures["hop_floor_ms"]
    figures["reminder_vs_floor"] = figures["reminder_sweep_ms"] / figures["reminder_floor_ms"]
    figures["bot_rss_vs_floor"] = figures["bot_rss_mb"] / figures["bot_rss_floor_mb"]
    say(f"latency measured from: {latency_method}")
    for name in ("throughput_per_s", "api_create_per_s", "api_get_p50_ms", "api_get_p99_ms", "set_status_per_s", "worker_next_p50_ms", "hop_p50_ms", "hop_p99_ms", "e2e_p50_ms", "sweep_ms", "reminder_sweep_ms",
                 "reminder_floor_ms", "reminder_vs_floor",
                 "purge_batch_ms", "purge_batch_max_ms", "purge_per_s", "bot_rss_mb", "scrape_ms",
                 "hop_floor_ms", "hop_vs_floor", "bot_rss_floor_mb", "bot_rss_vs_floor", "idle_cpu_pct",
                 "connections_per_bot", "console_page_p95_ms", "console_fleet_p95_ms", "console_type_p95_ms",
                 "console_list_p95_ms", "console_list_state_p95_ms", "console_list_search_p95_ms",
                 "console_ticket_p95_ms"):
        print(f"{name}={figures[name]:.{0 if name.endswith('_per_s') else 2}f}")


if __name__ == "__main__":
    main()
