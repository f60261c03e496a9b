"""A map's items table and deep links, child and parent runs linked, and the workers page
(issue 18: items 2 and 4), in a real browser against a real `treadle serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Server, start_server
from tests.e2e.ui.conftest import register, shot, start
from treadle.ports import WorkerRecord
from treadle.store._sqlalchemy import SqlStore

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ITEMS = 120  # 60 of them fail: two pages of failed items at 50 a page
ODD = {
    "name": "ui-odd",
    "tasks": {
        "fan": {
            "type": "map",
            "items": "${ input.items }",
            "concurrency": 40,
            "on_failure": "complete_all",
            "task": {
                "handler": "ui.odd_fails",
                "input": {"n": "${ item }"},
                "retry": {"max_attempts": 1},
            },
        }
    },
}
KID = {"name": "ui-kid", "tasks": {"work": {"handler": "ui.step", "input": {"seconds": 0}}}}
PARENT = {"name": "ui-parent", "tasks": {"child": {"type": "workflow", "workflow": "ui-kid"}}}
STRANDED = {"name": "ui-stranded", "tasks": {"gpu": {"handler": "x.render", "queue": "nobody"}}}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The SQLite database the module's server uses (a test writes a worker row in it)."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ui-maps') / 'treadle.db'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Server]:
    """One `treadle serve` whose worker reports itself every half second."""
    tmp: Path = tmp_path_factory.mktemp("ui-maps-server")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TREADLE_WORKER__REPORT_INTERVAL_SECONDS", "0.5")
        handlers = ("--handlers", "tests.e2e.handlers", "tests.e2e.ui.handlers")
        server = start_server(tmp, database, *handlers)
    yield server
    server.stop()


def test_a_map_opens_a_paged_filterable_table_of_its_items(page: Page, server: Server) -> None:
    """The map's panel lists its items (status, attempts, error on the row); filtering by
    failed leaves only failed rows, paged by the API's cursor; an item's URL opens it with
    one read that starts at its index."""
    register(server, ODD)
    run_id = start(server, "ui-odd", {"items": list(range(ITEMS))})
    assert server.wait_for_run(run_id)["status"] == "failed"
    page.goto(f"#/runs/{run_id}/tasks/fan")
    rows = page.locator("table.items tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator('table.items tr[data-item="1"] .item-error-cell summary')).to_have_text(
        "ValueError: item 1 is odd"
    )
    expect(page.locator('table.items tr[data-item="2"] .chip')).to_have_text("completed")
    page.locator("#item-status").select_option("failed")
    expect(page.locator('table.items tr[data-item="1"]')).to_be_visible()
    expect(page.locator('table.items tr[data-item="0"]')).to_have_count(0)
    expect(rows).to_have_count(50)
    expect(page.locator("table.items tbody .chip.st-failed")).to_have_count(50)
    page.locator(".items-next").click()
    expect(page.locator('table.items tr[data-item="101"]')).to_be_visible()
    expect(rows).to_have_count(10)
    expect(page.locator(".items-next")).to_be_disabled()
    page.locator(".items-prev").click()
    expect(page.locator('table.items tr[data-item="1"]')).to_be_visible()
    # The table at the top of the view, just below the sticky header.
    page.locator(".items-table").evaluate("e => { e.scrollIntoView(); window.scrollBy(0, -100); }")
    shot(page, "map-items", full_page=False)

    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/items?" in r.url else None)
    page.locator('table.items tr[data-item="77"] a').click()
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}/tasks/fan/items/77$"))
    expect(page.locator("#task-panel .item-title")).to_have_text("fan[77]")
    expect(page.locator("#task-panel .item-error")).to_contain_text("item 77 is odd")
    assert any("from_index=77" in u and "limit=1" in u for u in reads), reads
    assert not any("limit=500" in u for u in reads), reads


def test_a_child_run_and_its_parent_link_to_each_other(page: Page, server: Server) -> None:
    """The parent's workflow task links to the child run; the child links back to the
    parent's task."""
    register(server, KID)
    register(server, PARENT)
    parent_id = start(server, "ui-parent", {})
    assert server.wait_for_run(parent_id)["status"] == "completed"
    child_id = server.http.get(f"/v1/runs/{parent_id}").json()["tasks"][0]["child_run_id"]
    page.goto(f"#/runs/{parent_id}/tasks/child")
    page.locator("#task-panel a.child-link").click()
    expect(page).to_have_url(re.compile(f"#/runs/{child_id}$"))
    expect(page.locator(".run-title")).to_contain_text(child_id)
    page.locator(".run-head a.parent-link").click()
    expect(page).to_have_url(re.compile(f"#/runs/{parent_id}/tasks/child$"))
    expect(page.locator("#task-panel .task-title")).to_have_text("child")


async def _record_silent_worker(database: str) -> None:
    store = SqlStore(database)
    now = datetime.now(UTC)
    try:
        await store.record_worker(
            WorkerRecord(
                id="worker@gone:1:deadbeef",
                host="gone",
                pid=1,
                queues=["default"],
                handlers=["x.old"],
                concurrency=2,
                inflight=1,
                started_at=now - timedelta(hours=2),
                last_seen=now - timedelta(minutes=5),
            )
        )
    finally:
        await store.close()


def test_the_workers_page_shows_live_and_silent_workers_and_each_queues_backlog(
    page: Page, server: Server, database: str
) -> None:
    """The server's own worker is alive with its queue, handlers and load; a worker that
    stopped reporting shows as silent; a queue no worker consumes shows its waiting
    dispatch and its age."""
    # In a thread of its own: Playwright's sync API holds this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, _record_silent_worker, database).result()
    register(server, STRANDED)
    run_id = start(server, "ui-stranded", {})
    try:
        page.goto("#/workers")
        live = page.locator("table.workers tbody tr:not(.silent)").first
        expect(live.locator(".worker-state .chip")).to_have_text("alive")
        expect(live.locator(".worker-queues")).to_have_text("default")
        expect(live.locator(".worker-handlers")).to_contain_text("ui.odd_fails")
        expect(live.locator(".worker-load")).to_have_text(re.compile(r"^\d+ / 32$"))
        gone = page.locator('tr[data-worker="worker@gone:1:deadbeef"]')
        expect(gone.locator(".worker-state .chip")).to_have_text("silent")
        stranded = page.locator('table.queues tr[data-queue="nobody"]')
        expect(stranded.locator(".queue-waiting")).to_have_text("1")
        expect(stranded.locator(".queue-workers")).to_have_text("no worker")
        expect(stranded.locator(".queue-oldest")).to_contain_text("since")
        expect(page.locator('table.queues tr[data-queue="default"] .queue-workers')).to_have_text(
            "1"
        )
        expect(page.locator('nav a[data-nav="workers"]')).to_have_attribute("aria-current", "page")
        shot(page, "workers")
    finally:
        assert server.http.post(f"/v1/runs/{run_id}/cancel", json={}).status_code == 202
