"""The HTTP API's figures: POST /tickets from concurrent keep-alive clients, and GET /tickets/{id} latency,
against a real `botfleet api run` process on the benchmark's database.

The clients are keep-alive HTTP/1.1 connections on one event loop, their answers parsed by httptools (the
parser uvicorn serves with). On two cores the load generator shares the machine with the server and
PostgreSQL, so what it costs is taken from what is measured: httpx costs about 2.4 ms of CPU per request
(the whole create costs the server and the database about 1.2 ms), aiohttp about 0.2 ms, these clients
about 0.07 ms."""

import asyncio
import json
import shutil
import time
from pathlib import Path

import httptools

from bench import pipeline
from common.access.tokens import create_token
from common.store.connect import connect
from tests.harness import BotProcesses, free_port, percentile, wait_answering

CLIENTS = 16
QUEUE_TYPE = "queue"  # the type external workers pull from
SEED_MODEL = Path(__file__).resolve().parent.parent / "config" / "status_models" / "2_point_line_task.yaml"
# Creates sent before the timed ones, not counted: they open the server's pooled connections and let
# psycopg prepare the statement on each (a statement runs unprepared, and is planned, five times first).
WARM_UP_CREATES = 320
START_TIMEOUT_S = 30
# A deadline for a whole run of requests, not for each: a timer per request would cost the client as
# much as parsing the answer.
RUN_TIMEOUT_S = 300


def start_api(root: Path, url: str, metaservice: str) -> tuple[str, str, object]:
    """A config at root with an api: section and the seed's status model, the API process serving it, and a
    token: (base URL, token, process)."""
    port = free_port()
    pipeline.write_config(root / "config", metaservice,
                          f"heartbeat_interval: 2s\nmetaservices: [{metaservice}]\napi:\n  listen: 127.0.0.1:{port}\n",
                          "bench.handlers:step")
    (root / "config" / "status_models").mkdir()
    shutil.copy(SEED_MODEL, root / "config" / "status_models")
    # A queue whose one working state is pulled by external workers (seed 002).
    (root / "config" / "ticket_types" / metaservice / f"{QUEUE_TYPE}.yaml").write_text(
        "lifetime: 1h\nnotification_frequency: 1h\nretention: 1d\n"
        "states:\n  - {code: 1, name: queued}\n  - {code: 2, name: done, final: true}\ntransitions: [[1, 2]]\n")
    (root / "config" / "bots" / f"{metaservice}-{QUEUE_TYPE}-1-queued.yaml").write_text("worker: external\n")
    (root / "config" / "bots" / f"{metaservice}-{QUEUE_TYPE}-2-done.yaml").write_text("# final state\n")
    with connect(url, autocommit=True) as conn:
        token = create_token(conn, f"bench-{port}", "read,submit,work")
    process = BotProcesses(root).spawn("api", ["api", "run"], root / "config", url)
    base_url = f"http://127.0.0.1:{port}"
    wait_answering(process, base_url, START_TIMEOUT_S)
    return base_url, token, process


class KeepAlive(asyncio.Protocol):
    """One keep-alive connection, one request at a time: request() sends it and returns (status, body)."""

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.transport, self.answer, self.body = None, None, []

    @classmethod
    async def open(cls, host: str, port: int) -> "KeepAlive":
        _, connection = await asyncio.get_running_loop().create_connection(cls, host, port)
        return connection

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))

    def connection_lost(self, exc):
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"the API closed the connection: {exc}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.answer, self.body = asyncio.get_running_loop().create_future(), []
        self.transport.write(raw)
        return await self.answer

    def close(self):
        self.transport.close()


def _request(method: str, path: str, host: str, token: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _host_port(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


async def _run(base_url, shares, handle) -> float:
    """One keep-alive connection per list of raw requests in `shares`, all side by side, each sending its
    next request when its answer has come; handle(status, body) each answer. Seconds the sending took."""
    host, port = _host_port(base_url)
    connections = [await KeepAlive.open(host, port) for _ in shares]

    async def client(connection, requests):
        for raw in requests:
            handle(*await connection.request(raw))

    started = time.perf_counter()
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await asyncio.gather(*(client(c, requests) for c, requests in zip(connections, shares, strict=True)))
    finally:
        for connection in connections:
            connection.close()
    return time.perf_counter() - started


def _split(requests: list) -> list[list]:
    """The requests dealt out to CLIENTS connections in turn."""
    return [requests[index::CLIENTS] for index in range(CLIENTS)]


def _answers(expected_status: int):
    """(answers' JSON bodies, refusals' texts, and a handler that files each answer under one of them)."""
    bodies, errors = [], []

    def handle(status, body):
        (bodies.append(json.loads(body)) if status == expected_status else errors.append(body.decode()))
    return bodies, errors, handle


def _check(errors, what):
    if errors:
        raise RuntimeError(f"{len(errors)} {what} failed; the first: {errors[0]}")


def measure_set_status(base_url, token, total) -> float:
    """setStatus `total` times (RUN, then FINISHED, on total/2 instances of the seed's 2-POINT LINE TASK,
    created first and untimed) from CLIENTS keep-alive clients side by side: calls per second."""
    host, _ = _host_port(base_url)
    create = _request("POST", "/instance/create", host, token,
                      json.dumps({"object_name": "2-POINT LINE TASK", "instance_timeout": 3600}).encode())
    created, errors, handle = _answers(201)
    asyncio.run(_run(base_url, _split([create] * (total // 2)), handle))
    _check(errors, "instance creates")

    def calls(instance):
        return [_request("POST", "/status/setStatus", host, token,
                         json.dumps({"instance_token": instance, "status_name": status}).encode())
                for status in ("RUN", "FINISHED")]

    # Each client sets RUN, then FINISHED, on its own instances: FINISHED needs RUN set first.
    shares = [[call for body in share for call in calls(body["instance_token"])] for share in _split(created)]
    _, errors, handle = _answers(200)
    elapsed_s = asyncio.run(_run(base_url, shares, handle))
    _check(errors, "setStatus calls")
    return sum(len(share) for share in shares) / elapsed_s


def measure_creates(base_url, token, metaservice, total) -> tuple[float, list[int]]:
    """POST /tickets `total` times from CLIENTS keep-alive clients side by side, after WARM_UP_CREATES
    untimed: (creates per second, ids)."""
    host, _ = _host_port(base_url)
    raw = _request("POST", "/tickets", host, token,
                   json.dumps({"metaservice": metaservice, "type": pipeline.TICKET_TYPE, "payload": {"n": 1}}).encode())
    for count in (WARM_UP_CREATES, total):
        tickets, errors, handle = _answers(201)
        elapsed_s = asyncio.run(_run(base_url, _split([raw] * count), handle))
        _check(errors, "creates")
    return total / elapsed_s, [ticket["id"] for ticket in tickets]


def measure_gets(base_url, token, ids, count) -> tuple[float, float]:
    """GET /tickets/{id} one after another on one keep-alive client: (p50 ms, p99 ms)."""
    return asyncio.run(_gets(base_url, token, ids, count))


async def _gets(base_url, token, ids, count):
    host, port = _host_port(base_url)
    connection = await KeepAlive.open(host, port)
    times_ms = []
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await _timed_gets(connection, host, token, ids, count, times_ms)
    finally:
        connection.close()
    return percentile(times_ms, .5), percentile(times_ms, .99)


async def _timed_gets(connection, host, token, ids, count, times_ms):
    for index in range(count):
        raw = _request("GET", f"/tickets/{ids[index % len(ids)]}", host, token)
        started = time.perf_counter()
        status, body = await connection.request(raw)
        times_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"GET answered {status}: {body.decode()}")


def measure_worker_next(base_url, token, metaservice, count) -> tuple[float, float]:
    """`count` tickets queued for external workers (created first, untimed), then one worker asking for the
    next and finishing it, `count` times on one keep-alive connection: the ask's (p50 ms, p99 ms)."""
    host, _ = _host_port(base_url)
    raw = _request("POST", "/tickets", host, token,
                   json.dumps({"metaservice": metaservice, "type": QUEUE_TYPE, "payload": {"site": "foo"}}).encode())
    _, errors, handle = _answers(201)
    asyncio.run(_run(base_url, _split([raw] * count), handle))
    _check(errors, "creates of queued tickets")
    return asyncio.run(_pull(base_url, token, metaservice, count))


async def _pull(base_url, token, metaservice, count):
    host, port = _host_port(base_url)
    connection = await KeepAlive.open(host, port)
    session = "Worker-Session: bench-1\r\n"
    ask = _request("POST", f"/workers/bench-1/next?type={metaservice}/{QUEUE_TYPE}", host, token, extra=session)
    times_ms = []
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            for _ in range(count):
                started = time.perf_counter()
                status, body = await connection.request(ask)
                times_ms.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"next answered {status}: {body.decode()}")
                finish = _request("POST", f"/workers/bench-1/tickets/{json.loads(body)['id']}/finish", host, token,
                                  b"{}", extra=session)
                status, body = await connection.request(finish)
                if status != 200:
                    raise RuntimeError(f"finish answered {status}: {body.decode()}")
    finally:
        connection.close()
    return percentile(times_ms, .5), percentile(times_ms, .99)
