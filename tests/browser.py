"""A real browser for the console's tests: Debian's chromium (never a downloaded one), driven by Playwright."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root there is no sandbox; and on a closed network Chromium's own background fetches only fail noisily.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# `make screenshots` sets this: the README's pictures are the ones a test run made.
SCREENSHOTS_ENV = "BOTFLEET_SCREENSHOTS"
WAIT_MS = 15_000  # Playwright's own waits poll until this deadline


@pytest.fixture(scope="session")
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
