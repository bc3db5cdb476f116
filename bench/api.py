"""The HTTP API's figures: POST /tickets from concurrent keep-alive clients, and GET /tickets/{id} latency,
against a real `botfleet api run` process on the benchmark's database."""

import threading
import time
from pathlib import Path

import httpx

from bench import pipeline
from common.access.tokens import create_token
from common.store.connect import connect
from tests.harness import BotProcesses, free_port, percentile, wait_answering

CLIENTS = 16
START_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 30


def start_api(root: Path, url: str, metaservice: str) -> tuple[str, str, object]:
    """A config at root with an api: section, the API process serving it, and a token: (base URL, token, process)."""
    port = free_port()
    pipeline.write_config(root / "config", metaservice,
                          f"heartbeat_interval: 2s\nmetaservices: [{metaservice}]\napi:\n  listen: 127.0.0.1:{port}\n",
                          "bench.handlers:step")
    with connect(url, autocommit=True) as conn:
        token = create_token(conn, f"bench-{port}", "read,submit")
    process = BotProcesses(root).spawn("api", ["api", "run"], root / "config", url)
    base_url = f"http://127.0.0.1:{port}"
    wait_answering(process, base_url, START_TIMEOUT_S)
    return base_url, token, process


def measure_creates(base_url, token, metaservice, total) -> tuple[float, list[int]]:
    """POST /tickets `total` times from CLIENTS keep-alive clients side by side: (creates per second, ids)."""
    body = {"metaservice": metaservice, "type": pipeline.TICKET_TYPE, "payload": {"n": 1}}
    headers = {"Authorization": f"Bearer {token}"}
    ids, errors, lock = [], [], threading.Lock()
    remaining = [total]

    def client():
        with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                response = http.post("/tickets", json=body)
                with lock:
                    (ids.append(response.json()["id"]) if response.status_code == 201 else errors.append(response.text))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed_s = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed; the first: {errors[0]}")
    return total / elapsed_s, ids


def measure_gets(base_url, token, ids, count) -> tuple[float, float]:
    """GET /tickets/{id} one after another on one keep-alive client: (p50 ms, p99 ms)."""
    times_ms = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                      timeout=REQUEST_TIMEOUT_S) as http:
        for index in range(count):
            started = time.perf_counter()
            response = http.get(f"/tickets/{ids[index % len(ids)]}")
            times_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET answered {response.status_code}: {response.text}")
    return percentile(times_ms, .5), percentile(times_ms, .99)
