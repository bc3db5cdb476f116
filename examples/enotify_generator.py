"""An Enotify generator (seed 002) as a worker of the fleet: it asks for a site, "renders" it while
reporting each part's start and end, and finishes it; with --once it stops when no site is due.

    botfleet token create --name generator --scopes work     # once: prints the token
    botfleet ticket create enotify site --payload '{"site": "foo"}'
    python examples/enotify_generator.py --token <token> --name gen-1

Run it from cron, as the seed does, or leave it running: it polls every --idle seconds when idle.

One generator per name and host: a lock file says which runs, and keeps its session. A generator that
crashed and is started again is the same worker to the controller, so asking for work abandons the site
the crashed one held (the seed's rogue generator); a second one while the first runs stops at once.
"""

import argparse
import fcntl
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from workers.client import WorkerClient, WorkerError  # noqa: E402

PARTS = ("BUG_LIST_DOWNLOAD", "RENDERING_PAGES", "RENDERING_GRAPHS")


def generate(worker: WorkerClient, ticket: dict, part_s: float) -> dict:
    site = ticket["payload"].get("site", "?")
    print(f"generating enotify/sites/{site} (ticket {ticket['id']})", flush=True)
    worker.progress(ticket["id"], "GENERATION_START")
    for part in PARTS:
        worker.progress(ticket["id"], f"GENERATION_{part}_START")
        time.sleep(part_s)  # the real generator's work goes here
        worker.progress(ticket["id"], f"GENERATION_{part}_END")
    worker.progress(ticket["id"], "GENERATION_END")
    return worker.finish(ticket["id"], payload={"generated_by": worker.name})


def claim_name(name: str, folder: Path):
    """(session, lock file) of this host's generator `name`; SystemExit if one already runs here. The
    lock ends with the process, however it ends; the session stays in the file for the next one."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / f"enotify-generator-{name}.session", "a+")  # open for as long as the process runs
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"a generator named {name} already runs on this host ({handle.name})") from None
    handle.seek(0)
    session = handle.read().strip()
    if not session:
        session = uuid.uuid4().hex
        handle.write(session)
        handle.flush()
    return session, handle


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True, help="a token with the work scope")
    parser.add_argument("--name", default="generator-1", help="this generator's name (one process per name)")
    parser.add_argument("--part-seconds", type=float, default=0.5, help="how long each part takes")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds between asks while there is no work")
    parser.add_argument("--once", action="store_true", help="stop when no site is due")
    parser.add_argument("--lock-dir", type=Path, default=Path(tempfile.gettempdir()) / "enotify-generators",
                        help="where the lock file of each name keeps its session")
    args = parser.parse_args(argv)
    session, _lock = claim_name(args.name, args.lock_dir)
    worker = WorkerClient(args.url, args.token, name=args.name, ticket_type="enotify/site", session=session)
    try:
        while True:
            ticket = worker.next_ticket()
            if ticket is None:
                if args.once:
                    return 0
                time.sleep(args.idle)
                continue
            done = generate(worker, ticket, args.part_seconds)
            print(f"ticket {done['id']} is {done['state_name']}", flush=True)
    except WorkerError as exc:
        print(f"the controller refused: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
