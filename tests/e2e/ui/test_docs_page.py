"""The API docs page renders in a real browser that may reach nothing but Treadle."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.e2e.conftest import Server
from tests.e2e.ui.conftest import DESKTOP

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_docs_page_renders_offline(browser: Browser, server: Server) -> None:
    """With every other origin refused, /schema shows the API's operations."""
    origin = urlsplit(server.url).netloc
    elsewhere: list[str] = []

    def only_treadle(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    context.route("**/*", only_treadle)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/schema")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Treadle")
        expect(page.locator(".opblock").first).to_be_visible()
        assert page.locator(".opblock").count() > 20
    finally:
        context.close()
    assert elsewhere == []
    assert errors == []
