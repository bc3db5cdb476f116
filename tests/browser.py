"""A real browser for the console's tests: Debian's chromium (never a downloaded one), driven by Playwright."""

import http.client
import os
import shutil
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root there is no sandbox; and on a closed network Chromium's own background fetches only fail noisily.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# `make screenshots` sets this: the README's pictures are the ones a test run made.
SCREENSHOTS_ENV = "README_SCREENSHOTS"  # not BOTFLEET_: the tests drop those from their environment
WAIT_MS = 15_000  # Playwright's own waits poll until this deadline


# Per module, not per session: Playwright's sync API keeps an event loop running in the main thread while it
# lives, and a later test's asyncio.run() would find it there.
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def sign_in(page, console_url: str, token: str) -> None:
    """Through the sign-in form, as a person does."""
    page.goto(console_url + "/")
    page.wait_for_url("**/signin**")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("header nav")


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """What the test checked, kept under its output folder (and for the README when asked)."""
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get(SCREENSHOTS_ENV)
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / path.name)
    return path


class _ProxyHandler(BaseHTTPRequestHandler):
    """A reverse proxy serving the API under a prefix, which it strips, as nginx's `proxy_pass .../;` does.
    HTTP/1.0 to the browser: a streamed answer (the console's live updates) simply ends with the connection."""

    prefix, upstream = "", ("127.0.0.1", 0)
    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"}

    def _relay(self):
        if not (self.path == self.prefix or self.path.startswith(self.prefix + "/")):
            self.send_error(404, "outside the proxied prefix")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self.HOP_BY_HOP}
        headers["X-Forwarded-Prefix"] = self.prefix
        upstream.request(self.command, self.path[len(self.prefix):] or "/", body=body or None, headers=headers)
        answer = upstream.getresponse()
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in self.HOP_BY_HOP:
                self.send_header(key, value)
        self.end_headers()
        try:
            while chunk := answer.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away
        finally:
            upstream.close()

    do_GET = do_POST = do_PATCH = do_DELETE = _relay

    def log_message(self, *args):
        pass


@contextmanager
def reverse_proxy(prefix: str, upstream_port: int):
    """http://127.0.0.1:PORT{prefix}/... served by the API on upstream_port at /..., until the block ends."""
    handler = type("Proxy", (_ProxyHandler,), {"prefix": prefix, "upstream": ("127.0.0.1", upstream_port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
