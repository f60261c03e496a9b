"""A real `treadle serve` and headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.conftest import ROOT, Server, start_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `treadle serve` (all roles, SQLite) per test module, with the UI handlers."""
    tmp: Path = tmp_path_factory.mktemp("ui")
    handlers = ("--handlers", "tests.e2e.handlers", "tests.e2e.ui.handlers")
    server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'treadle.db'}", *handlers)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by one module's tests.

    Module scope, not session: Playwright's sync API keeps its own asyncio loop registered
    while it is open, and any anyio test that xdist later runs on the same worker would
    then fail with "another loop is running".
    """
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh browser context at 1280 px on the dashboard; fails the test on a page error."""
    context = browser.new_context(viewport=DESKTOP, base_url=f"{server.url}/ui/")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def register(server: Server, definition: dict[str, Any]) -> None:
    """Register a workflow through the API."""
    response = server.http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text


def start(server: Server, workflow: str, input: Any) -> str:
    """Start a run through the API and return its id."""
    response = server.start(workflow, input)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Take a screenshot; with TREADLE_UPDATE_SCREENSHOTS=1 it replaces docs/screenshots/.

    Every run renders the page to an image (so a broken render still fails the test), but
    only an explicit update rewrites the committed files, keeping a test run's tree clean.
    """
    image = page.screenshot(full_page=full_page)
    assert image.startswith(b"\x89PNG"), f"screenshot {name} is not a PNG"
    if os.environ.get("TREADLE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(image)
