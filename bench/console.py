"""The web console's figures: how long its pages take to render on the benchmark's big table (a million closed
tickets and the open ones of the sweep benchmark), served by a real `botfleet api run` process.

Each page is asked for one request after another by one signed-in client, after a warm-up that opens the
API's pooled connections; the figure is the 95th percentile of the time to the whole answer. The client is
httpx, whose own cost (about a millisecond) is in the figure."""

from pathlib import Path

import httpx

from api.console.session import COOKIE
from bench import pipeline
from common.access.tokens import create_token
from common.config.load import load
from common.store.connect import connect
from common.store.sync import sync_config
from tests.harness import BotProcesses, free_port, percentile, wait_answering

METASERVICE = "sweep"  # the sweep benchmark's tickets (bench/run.py fill_sweep_table): types t0..t3
TYPES = ("t0", "t1", "t2", "t3")
WARM_UP = 10
START_TIMEOUT_S = 30


def pages(ticket_id: int) -> dict:
    """The pages measured: the fleet, a type's graph with its counts, the ticket list (the newest, one state's
    closed tickets, a payload search) and one ticket."""
    return {
        "fleet": "/console/",
        "type": f"/console/types/{METASERVICE}/t0",
        "list": "/console/tickets",
        "list_state": f"/console/tickets?metaservice={METASERVICE}&type=t1&state=3&status=closed",
        "list_search": f'/console/tickets?metaservice={METASERVICE}&contains={{"n":%201}}',
        "ticket": f"/console/tickets/{ticket_id}",
    }


def start_console(root: Path, url: str) -> tuple[str, str, object]:
    """The sweep table's types in a config with an api: section, synced, served; a read token."""
    port = free_port()
    pipeline.write_config(root / "config", METASERVICE,
                          f"heartbeat_interval: 2s\nmetaservices: [{METASERVICE}]\napi:\n  listen: 127.0.0.1:{port}\n",
                          "bench.handlers:step", ticket_types=TYPES)
    with connect(url, autocommit=True) as conn:
        sync_config(conn, load(root / "config"))
        token = create_token(conn, f"console-{port}", "read")
    process = BotProcesses(root).spawn("api", ["api", "run"], root / "config", url)
    base_url = f"http://127.0.0.1:{port}"
    wait_answering(process, base_url, START_TIMEOUT_S)
    return base_url, token, process


def measure_pages(url: str, root: Path, requests_per_page: int, say) -> dict:
    """console_page_p95_ms (over every page) and console_<page>_p95_ms for each."""
    base_url, token, process = start_console(root, url)
    try:
        with connect(url, autocommit=True) as conn:
            ticket_id = conn.execute("SELECT max(id) AS id FROM tickets WHERE metaservice = %s",
                                     (METASERVICE,)).fetchone()["id"]
        figures, every_ms = {}, []
        with httpx.Client(base_url=base_url, cookies={COOKIE: token}, timeout=30) as client:
            for name, path in pages(ticket_id).items():
                times_ms = []
                for n in range(WARM_UP + requests_per_page):
                    response = client.get(path)
                    if response.status_code != 200:
                        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:500]}")
                    if n >= WARM_UP:
                        times_ms.append(response.elapsed.total_seconds() * 1000)
                every_ms += times_ms
                figures[f"console_{name}_p95_ms"] = percentile(times_ms, .95)
                say(f"  {path}: p50 {percentile(times_ms, .5):.1f} ms, p95 {percentile(times_ms, .95):.1f} ms")
        figures["console_page_p95_ms"] = percentile(every_ms, .95)
        return figures
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT_S)
