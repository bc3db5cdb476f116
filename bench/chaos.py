"""botfleet chaos run: 5,000 tickets through a 3-state pipeline while a random bot is SIGKILLed every second.

    .venv/bin/python bench/chaos.py [--tickets N] [--handler-ms MS] [--max-kills N]
    make chaos

Starts its own embedded PostgreSQL in a temp dir and a temp project run by a real supervisord: one
program per state of chaos/pipe (1 a -> 2 b -> 3 c, final) and the watchdog, as `botfleet supervisor
render` writes them. Bots take a 2 s lease, sweep every second, claim 32 at a time and heartbeat every
500 ms. The handlers of states 1 and 2 sleep --handler-ms (10 ms) and move the ticket on; at 4 threads
a bot does about 400 tickets a second, so the flow lasts long enough for the kills to land while every
bot holds a full batch (without the sleep, 5,000 tickets pass in about two seconds).

Once a second, until every ticket is closed (or --max-kills, or 90 s), it SIGKILLs one bot chosen at
random among those supervisord shows RUNNING whose previous kill has recovered. supervisord starts
the victim again (autorestart); its leased tickets go to the new process when the lease runs out.

Recovery of one kill: from the kill until supervisord shows the program RUNNING under a new pid AND a
heartbeat of that pid is in bot_processes (a heartbeat from the bot's loop, so after its first sweep,
not just the registration). supervisord reports RUNNING only after `startsecs` (3 s), which sets a
floor under that figure; the progress lines also give the time to the new process's first heartbeat.

It prints progress, then name=value lines: chaos_completed (tickets final at the end), chaos_lost
(not final at the end), chaos_duplicated (transitioned events beyond one per ticket and move),
chaos_recover_p50_s and chaos_recover_max_s, and rescue_p50_s and rescue_max_s: from a SIGKILL to the
claim that took over each ticket the killed process held (the claim comes right before the handler's
next run; target: two heartbeat intervals, 1 s here). Exit status 1 if a ticket was lost, a transition
duplicated or missing, or a kill never recovered. Every wait has a deadline and an alarm backs them up.
"""

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import pipeline  # noqa: E402
from common.config.load import load  # noqa: E402
from common.config.names import hostname
from common.store.connect import connect
from common.store.migrate import upgrade
from common.store.server import start_embedded, stop_embedded
from common.tickets.create import create_tickets
from tests.harness import Fleet, free_port, percentile, sigkill_one_running, wait_until, with_dbname  # noqa: E402

METASERVICE, TICKET_TYPE = "chaos", pipeline.TICKET_TYPE
BOTS = pipeline.bot_names(METASERVICE)
KILL_EVERY_S = 1.0
POLL_S = 0.05  # between looks at supervisord and the database while kills run
# Deadlines: nothing here waits without one.
SERVER_SETUP_TIMEOUT_S = 120
FLEET_START_TIMEOUT_S = 60
KILL_PHASE_S = 90
COMPLETION_TIMEOUT_S = 180  # after the kills stop
RECOVERY_TIMEOUT_S = 30  # for the last kills to recover, after the tickets are done
OVERALL_TIMEOUT_S = 600
CLEANUP_TIMEOUT_S = 90


def say(message):
    print(message, flush=True)


def paced(ticket, ctx):
    """The handler of states 1 and 2 (bench.chaos:paced): sleep payload.sleep_s, then the normal next state."""
    time.sleep(float(ticket.payload.get("sleep_s", 0)))  # stands for the handler's work
    return None


# -- setup -------------------------------------------------------------------------------------------


def write_config(root: Path, port: int):
    pipeline.write_config(
        root, METASERVICE,
        "heartbeat_interval: 500ms\n"
        "metaservices:\n  chaos: {description: chaos run}\n"
        "bot_defaults:\n  threads: 4\n  lease: 2s\n  sweep_interval: 1s\n  batch_size: 32\n  stop_timeout: 5s\n"
        f"watchdog:\n  listen: 127.0.0.1:{port}\n  check_interval: 250ms\n  fatal_retry_backoff: 1s\n",
        "bench.chaos:paced")


def heartbeats(conn):
    """bot name -> {pid: unix time it registered}, for this host's live processes that have heartbeated
    from their loop (the first loop heartbeat comes after the first sweep; registering is not one)."""
    rows = conn.execute("""
        SELECT bot_name, pid, extract(epoch FROM started_at)::float8 AS started FROM bot_processes
        WHERE stopped_at IS NULL AND host = %s AND heartbeat_at > started_at""", (hostname(),)).fetchall()
    result = {}
    for row in rows:
        result.setdefault(row["bot_name"], {})[row["pid"]] = row["started"]
    return result


def open_count(conn):
    return conn.execute("SELECT count(*) AS n FROM tickets WHERE metaservice = %s AND closed_at IS NULL",
                        (METASERVICE,)).fetchone()["n"]


# -- the run -----------------------------------------------------------------------------------------


class Kill:
    def __init__(self, name, pid):
        self.name, self.pid = name, pid
        self.at = time.monotonic()
        self.at_unix = time.time()  # to tell the new process's row from rows of processes killed before
        self.heartbeat_s = None  # until the new process's first loop heartbeat
        self.recovered_s = None  # until RUNNING under a new pid and that heartbeat
        self.held = []  # (ticket id, lease owner) of the tickets the killed process held


def held_by(conn, name, pid) -> list:
    """The open tickets a (now dead) process of bot `name` with `pid` held: (id, lease owner)."""
    rows = conn.execute("SELECT id, lease_owner FROM tickets WHERE lease_owner LIKE %s AND closed_at IS NULL",
                        (f"{name}@%:{pid}:%",)).fetchall()
    return [(row["id"], row["lease_owner"]) for row in rows]


def rescue_times_s(conn, kills) -> tuple[list, int]:
    """From each kill to the claim that took over each ticket the killed process held (the claim comes
    right before the handler's next run); and how many held tickets no claim took over."""
    held = {(ticket_id, owner): kill for kill in kills for ticket_id, owner in kill.held}
    if not held:
        return [], 0
    rows = conn.execute("""
        SELECT ticket_id, detail->>'previous_owner' AS owner, extract(epoch FROM at)::float8 AS at_s
        FROM ticket_events WHERE kind = 'claimed' AND ticket_id = ANY(%s)""",
                        ([ticket_id for ticket_id, _ in held],)).fetchall()
    claimed = {(row["ticket_id"], row["owner"]): row["at_s"] for row in rows}
    times = [claimed[key] - kill.at_unix for key, kill in held.items() if key in claimed]
    return times, len(held) - len(times)


def update_recoveries(pending, infos, beats):
    """Note what each unrecovered kill has reached; returns the kills still pending."""
    now = time.monotonic()
    still = []
    for kill in pending:
        # SIGKILLed processes never deregister: their rows stay until the watchdog retires them.
        looped = {pid for pid, started in beats.get(kill.name, {}).items() if started > kill.at_unix}
        if kill.heartbeat_s is None and looped:
            kill.heartbeat_s = now - kill.at
        info = infos.get(kill.name)
        if info and info["statename"] == "RUNNING" and info["pid"] != kill.pid and info["pid"] in looped:
            kill.recovered_s = now - kill.at
        else:
            still.append(kill)
    return still


def follow_recoveries(fleet, conn, pending, done, timeout_s):
    """Keep noting what the pending kills reach until done(pending) or timeout_s; the kills still pending.

    A timeout is no error here: the run reports what is still open or unrecovered."""
    state = {"pending": pending}

    def finished():
        state["pending"] = update_recoveries(state["pending"], fleet.processes(), heartbeats(conn))
        return done(state["pending"])
    try:
        wait_until(finished, timeout_s, "the run to settle", interval_s=POLL_S)
    except TimeoutError:
        pass
    return state["pending"]


def run_kills(fleet, conn, rng, max_kills, kills):
    """Kill once a second until every ticket is closed; returns the kills still recovering."""
    pending = []
    started = time.monotonic()
    next_kill = started
    while open_count(conn) and len(kills) < max_kills and time.monotonic() - started < KILL_PHASE_S:
        infos = fleet.processes()
        pending = update_recoveries(pending, infos, heartbeats(conn))
        if time.monotonic() >= next_kill:
            next_kill += KILL_EVERY_S
            busy = {kill.name for kill in pending}
            killed = sigkill_one_running(infos, set(BOTS) - busy, rng)
            if killed:
                kills.append(Kill(*killed))
                kills[-1].held = held_by(conn, *killed)
                pending.append(kills[-1])
                say(f"  {time.monotonic() - started:5.1f}s  SIGKILL {killed[0]} (pid {killed[1]}), "
                    f"{open_count(conn)} tickets open")
        time.sleep(POLL_S)
    return pending


def audit(conn, ids):
    counts = conn.execute("""
        SELECT count(*) FILTER (WHERE state = 3 AND closed_at IS NOT NULL) AS completed,
               count(*) FILTER (WHERE state <> 3 OR closed_at IS NULL) AS lost
        FROM tickets WHERE id = ANY(%(ids)s)""", {"ids": ids}).fetchone()
    moves = conn.execute("""
        WITH expected AS (
            SELECT id, m.from_state, m.to_state FROM unnest(%(ids)s::bigint[]) AS id,
                   (VALUES (1, 2), (2, 3)) AS m(from_state, to_state)
        ), seen AS (
            SELECT ticket_id AS id, from_state, to_state, count(*) AS n FROM ticket_events
            WHERE kind = 'transitioned' AND ticket_id = ANY(%(ids)s) GROUP BY 1, 2, 3
        )
        SELECT coalesce(sum(s.n - 1) FILTER (WHERE s.n > 1), 0) AS duplicated,
               count(*) FILTER (WHERE s.n IS NULL) AS missing,
               count(*) FILTER (WHERE e.id IS NULL) AS unexpected
        FROM expected e FULL JOIN seen s USING (id, from_state, to_state)""", {"ids": ids}).fetchone()
    return {"completed": counts["completed"], "lost": counts["lost"], "duplicated": int(moves["duplicated"]),
            "missing": moves["missing"], "unexpected": moves["unexpected"]}


def on_alarm(signum, frame):
    raise TimeoutError("chaos run did not finish within its overall deadline")


def on_term(signum, frame):
    raise SystemExit(128 + signum)  # through the finally blocks: supervisord, bots and server are stopped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=5000)
    parser.add_argument("--handler-ms", type=float, default=10.0, help="sleep in the handlers of states 1 and 2")
    parser.add_argument("--max-kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None, help="for the choice of victims")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(OVERALL_TIMEOUT_S)  # a last resort behind the deadline on every wait
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    say("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    tmp = Path(tempfile.mkdtemp(prefix="botfleet-chaos-"))
    pgdata = tmp / "pgdata"
    fleet = None
    kills = []
    try:
        say(f"starting embedded PostgreSQL in {pgdata}")
        server_url = start_embedded(pgdata)
        with connect(server_url, autocommit=True) as admin:
            admin.execute('CREATE DATABASE "botfleet_chaos"')
        url = with_dbname(server_url, "botfleet_chaos")
        fleet = Fleet(tmp / "project", url)
        write_config(fleet.config_dir, free_port())
        cfg = load(fleet.config_dir)
        upgrade(url, cfg)
        say(f"starting supervisord with {', '.join(BOTS)} and the watchdog (project {fleet.project})")
        fleet.start(timeout_s=FLEET_START_TIMEOUT_S)
        with connect(url, autocommit=True, application_name="chaos") as conn:
            def ready():
                infos, beats = fleet.processes(), heartbeats(conn)
                return (len(infos) == len(BOTS) + 1 and all(i["statename"] == "RUNNING" for i in infos.values())
                        and all(infos[name]["pid"] in beats.get(name, {}) for name in BOTS))
            wait_until(ready, FLEET_START_TIMEOUT_S, "every program RUNNING and every bot heartbeating")

            say(f"creating {args.tickets} tickets ({args.handler_ms:g} ms per handler), "
                f"then a SIGKILL a second (victims seeded with {seed})")
            created = time.monotonic()
            ids = create_tickets(conn, cfg, METASERVICE, TICKET_TYPE,
                                 [{"sleep_s": args.handler_ms / 1000} for _ in range(args.tickets)], creator="chaos")
            pending = run_kills(fleet, conn, rng, args.max_kills, kills)
            say(f"kills stopped after {len(kills)}: {open_count(conn)} tickets open")

            pending = follow_recoveries(fleet, conn, pending, lambda _: not open_count(conn), COMPLETION_TIMEOUT_S)
            elapsed_s = time.monotonic() - created
            still_open = open_count(conn)
            say(f"{args.tickets - still_open} of {args.tickets} tickets closed {elapsed_s:.1f}s after they were created"
                + (f"; gave up waiting for {still_open} after {COMPLETION_TIMEOUT_S}s" if still_open else ""))
            pending = follow_recoveries(fleet, conn, pending, lambda still: not still, RECOVERY_TIMEOUT_S)

            result = audit(conn, ids)
            rescued = conn.execute("SELECT count(*) AS n FROM ticket_events WHERE kind = 'claimed' "
                                   "AND ticket_id = ANY(%s)", (ids,)).fetchone()["n"]
            rescues, unrescued = rescue_times_s(conn, kills)
            crashes = conn.execute("SELECT count(*) AS n FROM watchdog_events WHERE action = 'restart' "
                                   "AND reason LIKE 'crash:%'").fetchone()["n"]
            actions = conn.execute("SELECT at, bot, action, reason FROM watchdog_events WHERE action <> 'health' "
                                   "AND reason NOT LIKE 'crash:%' "
                                   "ORDER BY id").fetchall()
            if still_open or pending or any(result[key] for key in ("lost", "duplicated", "missing", "unexpected")):
                for name in BOTS + ["watchdog"]:  # the temp dir goes away below
                    say(f"--- tail of {name}.log\n{fleet.log_tail(name)}")
    finally:
        signal.alarm(CLEANUP_TIMEOUT_S)  # cleanup has its own deadline
        try:
            if fleet is not None:
                fleet.stop()
            stop_embedded(pgdata)  # also a server that a failed setup left running
        finally:
            signal.alarm(0)
            shutil.rmtree(tmp, ignore_errors=True)

    recovered = [k.recovered_s for k in kills if k.recovered_s is not None]
    first_beats = [k.heartbeat_s for k in kills if k.heartbeat_s is not None]
    say(f"{len(kills)} SIGKILLs: " + ", ".join(f"{name} {sum(k.name == name for k in kills)}" for name in BOTS))
    say(f"{rescued} ticket(s) taken over from a killed process; {len(rescues)} rescues timed from their kill"
        + (f"; {unrescued} held ticket(s) needed no rescue: the process's last outcome write, in flight when it "
           "died, committed them" if unrescued else ""))
    if first_beats:
        say(f"kill -> new process's first heartbeat: p50 {percentile(first_beats, .5):.2f}s, "
            f"max {max(first_beats):.2f}s")
    if recovered:
        say(f"kill -> RUNNING under a new pid and heartbeating: p50 {percentile(recovered, .5):.2f}s, "
            f"max {max(recovered):.2f}s (supervisord says RUNNING only after startsecs=3s)")
    if len(recovered) < len(kills):
        say(f"NOT RECOVERED: {[(k.name, k.pid) for k in kills if k.recovered_s is None]}")
    say(f"restarts the watchdog saw supervisord make (reason crash): {crashes} of {len(kills)} kills")
    say(f"watchdog actions during the run: {len(actions)}"
        + "".join(f"\n  {a['at']:%H:%M:%S} {a['bot']} {a['action']}: {a['reason']}" for a in actions))
    say(f"transitions missing: {result['missing']}, unexpected: {result['unexpected']}")
    say(f"elapsed: {elapsed_s:.1f}s from the create to the last close")
    print(f"chaos_completed={result['completed']}")
    print(f"chaos_lost={result['lost']}")
    print(f"chaos_duplicated={result['duplicated']}")
    print(f"chaos_recover_p50_s={percentile(recovered, .5):.2f}" if recovered else "chaos_recover_p50_s=nan")
    print(f"chaos_recover_max_s={max(recovered):.2f}" if recovered else "chaos_recover_max_s=nan")
    print(f"rescue_p50_s={percentile(rescues, .5):.2f}" if rescues else "rescue_p50_s=nan")
    print(f"rescue_max_s={max(rescues):.2f}" if rescues else "rescue_max_s=nan")
    failed = (result["lost"] or result["duplicated"] or result["missing"] or result["unexpected"]
              or len(recovered) < len(kills))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
